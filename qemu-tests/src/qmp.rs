//! A client of the QEMU Machine Protocol (QMP): how a test acts on a running machine from
//! outside, as an administrator does with its hardware (pulling a USB stick, say).
//!
//! QEMU listens on a unix socket (`-qmp unix:PATH,server=on,wait=off`, see
//! [`crate::machine::qmp_args`]). The protocol is line-delimited JSON: QEMU greets with
//! `{"QMP": {...}}`, the client enters command mode with `qmp_capabilities`, then every
//! command `{"execute": ..., "arguments": ..., "id": ...}` is answered by `{"return": ...}` or
//! `{"error": {"class": ..., "desc": ...}}` carrying the same id. Between answers QEMU sends
//! asynchronous events (`{"event": ..., "data": ...}`) whenever something happens in the
//! machine; [`Qmp`] keeps the ones nobody awaited yet, so [`Qmp::wait_event`] finds an event
//! that arrived while a command was running.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long [`Qmp::execute`] waits for the answer to a command. QEMU answers between two
/// slices of guest execution, which take milliseconds even under TCG on a loaded machine.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Qmp::connect`] tries again while the socket does not exist yet. Polling is
/// the simplest way to wait for another process to create a file, and QEMU creates its QMP
/// socket within a fraction of a second of starting.
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// An asynchronous event QEMU reported.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Its name, e.g. `DEVICE_DELETED`.
    pub name: String,
    /// Its data (`null` when QEMU sent none), e.g. `{"device": "stick", "path": ...}`.
    pub data: Value,
}

/// One line QEMU sent on its QMP socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting sent on connection: QEMU's version and capabilities.
    Greeting(Value),
    /// A command succeeded.
    Return {
        /// The id of the command, if it had one.
        id: Option<u64>,
        /// What it returned.
        value: Value,
    },
    /// A command failed.
    Error {
        /// The id of the command, if QEMU could read it (it cannot in a line that is not
        /// JSON).
        id: Option<u64>,
        /// QEMU's error class, e.g. `DeviceNotFound` or `GenericError`.
        class: String,
        /// QEMU's explanation.
        desc: String,
    },
    /// Something happened in the machine.
    Event(QmpEvent),
}

/// A line from QEMU is not a QMP message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The line is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// The line is JSON but none of QMP's messages.
    #[error("JSON that is no QMP greeting, return, error or event")]
    UnknownShape,
}

impl Message {
    /// Parses one line QEMU sent.
    pub fn parse(line: &str) -> Result<Message, ParseError> {
        let value: Value = serde_json::from_str(line)?;
        let id = value.get("id").and_then(Value::as_u64);
        if let Some(greeting) = value.get("QMP") {
            return Ok(Message::Greeting(greeting.clone()));
        }
        if let Some(returned) = value.get("return") {
            return Ok(Message::Return {
                id,
                value: returned.clone(),
            });
        }
        if let Some(error) = value.get("error") {
            let field = |name| error.get(name).and_then(Value::as_str).map(str::to_string);
            let (Some(class), Some(desc)) = (field("class"), field("desc")) else {
                return Err(ParseError::UnknownShape);
            };
            return Ok(Message::Error { id, class, desc });
        }
        if let Some(name) = value.get("event").and_then(Value::as_str) {
            return Ok(Message::Event(QmpEvent {
                name: name.to_string(),
                data: value.get("data").cloned().unwrap_or(Value::Null),
            }));
        }
        Err(ParseError::UnknownShape)
    }
}

/// Talking to QEMU over QMP failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected to before the deadline.
    #[error("machine {machine}: cannot connect to QEMU's QMP socket {} within {waited:?}: {source}; did QEMU start? see its log (`<name>.qemu.log`)", .socket.display())]
    Connect {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// How long connecting was retried.
        waited: Duration,
        /// The last failure.
        source: io::Error,
    },
    /// QEMU sent no greeting after the connection was accepted.
    #[error("machine {machine}: QEMU sent no QMP greeting on {} within {waited:?}; is another client connected to it? (QEMU serves one at a time)", .socket.display())]
    NoGreeting {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// How long.
        waited: Duration,
    },
    /// The first line QEMU sent was not its greeting.
    #[error("machine {machine}: the first line on QMP socket {} is no greeting: {line:?}; is this socket QEMU's QMP monitor?", .socket.display())]
    NotGreeting {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// What QEMU sent instead.
        line: String,
    },
    /// A command could not be written to the socket.
    #[error("machine {machine}: cannot send `{command}` on QMP socket {}: {source}; did QEMU exit?", .socket.display())]
    Send {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
        /// Why.
        source: io::Error,
    },
    /// Reading from the socket failed.
    #[error("machine {machine}: cannot read {awaited} from QMP socket {}: {source}", .socket.display())]
    Receive {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// What was being read.
        awaited: String,
        /// Why.
        source: io::Error,
    },
    /// QEMU closed the connection.
    #[error("machine {machine}: QEMU closed QMP socket {} while we waited for {awaited}; did QEMU exit? see its log (`<name>.qemu.log`)", .socket.display())]
    Closed {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// What was awaited.
        awaited: String,
    },
    /// QEMU sent a line that is not a QMP message.
    #[error("machine {machine}: QMP socket {} sent {line:?}, which is {source}; is this QEMU's QMP monitor?", .socket.display())]
    Malformed {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// The line.
        line: String,
        /// What is wrong with it.
        source: ParseError,
    },
    /// QEMU refused a command.
    #[error("machine {machine}: QEMU refused `{command}` (on {}): {class}: {desc}", .socket.display())]
    Refused {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
        /// QEMU's error class, e.g. `DeviceNotFound`.
        class: String,
        /// QEMU's explanation.
        desc: String,
    },
    /// QEMU did not answer a command in time.
    #[error("machine {machine}: QEMU did not answer `{command}` on QMP socket {} within {waited:?}; is QEMU stopped or overloaded?", .socket.display())]
    NoAnswer {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
        /// How long.
        waited: Duration,
    },
    /// The awaited event did not come in time.
    #[error("machine {machine}: waited {waited:?} on QMP socket {} for the event {event} the test awaited; it did not come (events seen meanwhile: {seen:?})", .socket.display())]
    EventTimeout {
        /// The machine.
        machine: String,
        /// The socket.
        socket: PathBuf,
        /// The event's name.
        event: String,
        /// How long.
        waited: Duration,
        /// The names of the events that came instead and are still kept.
        seen: Vec<String>,
    },
}

/// A connection to one machine's QMP socket, in command mode.
#[derive(Debug)]
pub struct Qmp {
    machine: String,
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The bytes of the line being received (a read may time out in the middle of one).
    partial: Vec<u8>,
    /// Events received and not yet taken by [`Qmp::wait_event`], oldest first.
    events: VecDeque<QmpEvent>,
    /// The id of the next command: answers to earlier commands that timed out are told
    /// apart from the awaited one by it.
    next_id: u64,
}

impl Qmp {
    /// Connects to `socket`, QEMU's QMP socket of `machine` (the name is for errors), trying
    /// again until `timeout` while the socket does not exist or accept yet (QEMU is still
    /// starting), reads the greeting and enters command mode (`qmp_capabilities`).
    pub fn connect(machine: &str, socket: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Instant::now() + timeout;
        let stream = connect_until(socket, deadline).map_err(|source| QmpError::Connect {
            machine: machine.to_string(),
            socket: socket.to_path_buf(),
            waited: timeout,
            source,
        })?;
        let receive_error = |source| QmpError::Receive {
            machine: machine.to_string(),
            socket: socket.to_path_buf(),
            awaited: "the greeting".to_string(),
            source,
        };
        let writer = stream.try_clone().map_err(receive_error)?;
        let mut qmp = Qmp {
            machine: machine.to_string(),
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            partial: Vec::new(),
            events: VecDeque::new(),
            next_id: 1,
        };
        qmp.read_greeting(deadline, timeout)?;
        qmp.execute("qmp_capabilities", None)?;
        log::debug!(
            "machine {machine}: connected to QMP on {}",
            socket.display()
        );
        Ok(qmp)
    }

    /// Runs `command` with `arguments` (a JSON object, or none) and returns what it
    /// returned, waiting up to [`COMMAND_TIMEOUT`]. Events arriving meanwhile are kept for
    /// [`Qmp::wait_event`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(command, &request(command, arguments, id))?;
        let awaited = format!("the answer to `{command}`");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let Some(message) = self.receive(&awaited, deadline)? else {
                return Err(QmpError::NoAnswer {
                    machine: self.machine.clone(),
                    socket: self.socket.clone(),
                    command: command.to_string(),
                    waited: COMMAND_TIMEOUT,
                });
            };
            match message {
                Message::Event(event) => self.events.push_back(event),
                // No id: QEMU could not read the command's id, and only ours is pending.
                Message::Return { id: got, value } if got.is_none_or(|got| got == id) => {
                    return Ok(value)
                }
                Message::Error {
                    id: got,
                    class,
                    desc,
                } if got.is_none_or(|got| got == id) => {
                    return Err(QmpError::Refused {
                        machine: self.machine.clone(),
                        socket: self.socket.clone(),
                        command: command.to_string(),
                        class,
                        desc,
                    });
                }
                // The late answer to an earlier command that timed out: its caller is gone.
                other => log::debug!(
                    "machine {}: QMP: ignoring {other:?} while awaiting {awaited}",
                    self.machine
                ),
            }
        }
    }

    /// Waits up to `timeout` for the event `name` whose data satisfies `matches`, and
    /// returns it. An event that came earlier (while a command ran, say) and was not taken
    /// yet counts; events that do not match are kept for later waits.
    pub fn wait_event(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<QmpEvent, QmpError> {
        let is_awaited = |event: &QmpEvent| event.name == name && matches(&event.data);
        if let Some(index) = self.events.iter().position(is_awaited) {
            if let Some(event) = self.events.remove(index) {
                return Ok(event);
            }
        }
        let awaited = format!("the event {name}");
        let deadline = Instant::now() + timeout;
        loop {
            match self.receive(&awaited, deadline)? {
                None => {
                    return Err(QmpError::EventTimeout {
                        machine: self.machine.clone(),
                        socket: self.socket.clone(),
                        event: name.to_string(),
                        waited: timeout,
                        seen: self.events.iter().map(|event| event.name.clone()).collect(),
                    })
                }
                Some(Message::Event(event)) if is_awaited(&event) => return Ok(event),
                Some(Message::Event(event)) => self.events.push_back(event),
                // The late answer to an earlier command that timed out: its caller is gone.
                Some(other) => log::debug!(
                    "machine {}: QMP: ignoring {other:?} while awaiting {awaited}",
                    self.machine
                ),
            }
        }
    }

    /// Reads the first line and checks that it is QEMU's greeting.
    fn read_greeting(&mut self, deadline: Instant, timeout: Duration) -> Result<(), QmpError> {
        let Some(line) = self.receive_line("the greeting", deadline)? else {
            return Err(QmpError::NoGreeting {
                machine: self.machine.clone(),
                socket: self.socket.clone(),
                waited: timeout,
            });
        };
        match Message::parse(&line) {
            Ok(Message::Greeting(greeting)) => {
                log::debug!("machine {}: QMP greeting {greeting}", self.machine);
                Ok(())
            }
            _ => Err(QmpError::NotGreeting {
                machine: self.machine.clone(),
                socket: self.socket.clone(),
                line,
            }),
        }
    }

    fn send(&mut self, command: &str, request: &str) -> Result<(), QmpError> {
        self.writer
            .write_all(request.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|source| QmpError::Send {
                machine: self.machine.clone(),
                socket: self.socket.clone(),
                command: command.to_string(),
                source,
            })
    }

    /// The next message, or `None` if none came before `deadline`.
    fn receive(&mut self, awaited: &str, deadline: Instant) -> Result<Option<Message>, QmpError> {
        let Some(line) = self.receive_line(awaited, deadline)? else {
            return Ok(None);
        };
        Message::parse(&line)
            .map(Some)
            .map_err(|source| QmpError::Malformed {
                machine: self.machine.clone(),
                socket: self.socket.clone(),
                line,
                source,
            })
    }

    /// The next non-blank line, without its end, or `None` if none came before `deadline`.
    fn receive_line(
        &mut self,
        awaited: &str,
        deadline: Instant,
    ) -> Result<Option<String>, QmpError> {
        loop {
            if self.partial.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.partial).trim().to_string();
                self.partial.clear();
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(line));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let read = self
                .reader
                .get_ref()
                .set_read_timeout(Some(left))
                // read_until keeps what it read before a timeout in `partial`, so a line
                // split across two waits is not lost.
                .and_then(|()| self.reader.read_until(b'\n', &mut self.partial));
            match read {
                Ok(0) => {
                    return Err(QmpError::Closed {
                        machine: self.machine.clone(),
                        socket: self.socket.clone(),
                        awaited: awaited.to_string(),
                    })
                }
                Ok(_) => {}
                // The read timeout passed (the loop checks the deadline) or a signal
                // interrupted the read.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => {
                    return Err(QmpError::Receive {
                        machine: self.machine.clone(),
                        socket: self.socket.clone(),
                        awaited: awaited.to_string(),
                        source,
                    })
                }
            }
        }
    }
}

/// Connects to `socket`, trying again until `deadline` while it does not exist yet
/// (NotFound) or exists but does not listen yet (ConnectionRefused), as while QEMU starts.
fn connect_until(socket: &Path, deadline: Instant) -> io::Result<UnixStream> {
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() + CONNECT_RETRY < deadline =>
            {
                std::thread::sleep(CONNECT_RETRY);
            }
            Err(error) => return Err(error),
        }
    }
}

/// The line that runs `command` with `arguments` as command `id`.
fn request(command: &str, arguments: Option<Value>, id: u64) -> String {
    let mut request = json!({ "execute": command, "id": id });
    if let Some(arguments) = arguments {
        request["arguments"] = arguments;
    }
    format!("{request}\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::thread;

    use super::*;

    #[test]
    fn the_greeting_is_recognised() {
        let line = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}"#;
        let Ok(Message::Greeting(greeting)) = Message::parse(line) else {
            panic!("not a greeting: {:?}", Message::parse(line));
        };
        assert_eq!(greeting["version"]["qemu"]["major"], 7);
    }

    #[test]
    fn returns_and_errors_carry_the_command_id() {
        assert_eq!(
            Message::parse(r#"{"return": {}, "id": 3}"#).ok(),
            Some(Message::Return {
                id: Some(3),
                value: json!({})
            })
        );
        assert_eq!(
            Message::parse(
                r#"{"id": 4, "error": {"class": "DeviceNotFound", "desc": "Device 'stick' not found"}}"#
            )
            .ok(),
            Some(Message::Error {
                id: Some(4),
                class: "DeviceNotFound".into(),
                desc: "Device 'stick' not found".into()
            })
        );
        assert_eq!(
            Message::parse(r#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#)
                .ok(),
            Some(Message::Error {
                id: None,
                class: "GenericError".into(),
                desc: "JSON parse error".into()
            })
        );
    }

    #[test]
    fn events_carry_their_name_and_data() {
        let line = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_DELETED", "data": {"device": "stick", "path": "/machine/peripheral/stick"}}"#;
        assert_eq!(
            Message::parse(line).ok(),
            Some(Message::Event(QmpEvent {
                name: "DEVICE_DELETED".into(),
                data: json!({"device": "stick", "path": "/machine/peripheral/stick"})
            }))
        );
        let bare = Message::parse(r#"{"event": "STOP", "timestamp": {}}"#).ok();
        assert_eq!(
            bare,
            Some(Message::Event(QmpEvent {
                name: "STOP".into(),
                data: Value::Null
            }))
        );
    }

    #[test]
    fn lines_that_are_no_qmp_messages_are_rejected() {
        assert!(matches!(
            Message::parse("(qemu) info usb"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            Message::parse(r#"{"hello": 1}"#),
            Err(ParseError::UnknownShape)
        ));
        assert!(matches!(
            Message::parse(r#"{"error": {"desc": "no class"}}"#),
            Err(ParseError::UnknownShape)
        ));
    }

    #[test]
    fn requests_are_one_json_line_with_an_id() {
        let line = request("device_del", Some(json!({"id": "stick"})), 7);
        assert!(
            line.ends_with('\n') && !line.trim_end().contains('\n'),
            "{line:?}"
        );
        let value: Value = serde_json::from_str(&line).expect("the request is JSON");
        assert_eq!(
            value,
            json!({"execute": "device_del", "arguments": {"id": "stick"}, "id": 7})
        );
        let bare: Value =
            serde_json::from_str(&request("query-block", None, 8)).expect("the request is JSON");
        assert_eq!(bare, json!({"execute": "query-block", "id": 8}));
    }

    /// A fake QEMU on a socket in `dir`: greets, then answers each request line with the
    /// lines `answer` gives for it (the request's id passed in), and records the requests.
    fn fake_qemu(
        dir: &Path,
        answer: impl Fn(&Value, u64) -> Vec<String> + Send + 'static,
    ) -> (PathBuf, thread::JoinHandle<Vec<Value>>) {
        let socket = dir.join("qmp.sock");
        let listener = UnixListener::bind(&socket).expect("the fake QMP socket binds");
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().expect("the client connects");
            let mut writer = stream.try_clone().expect("the stream clones");
            writeln!(
                writer,
                r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#
            )
            .expect("the greeting is sent");
            let mut requests = Vec::new();
            for line in BufReader::new(stream).lines() {
                let request: Value =
                    serde_json::from_str(&line.expect("a request line")).expect("JSON");
                let id = request["id"].as_u64().expect("every request has an id");
                for reply in answer(&request, id) {
                    writeln!(writer, "{reply}").expect("the answer is sent");
                }
                requests.push(request);
            }
            requests
        });
        (socket, server)
    }

    #[test]
    fn execute_skips_events_and_stale_answers_and_keeps_the_events() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (socket, server) = fake_qemu(dir.path(), |request, id| {
            if request["execute"] == "qmp_capabilities" {
                return vec![format!(r#"{{"return": {{}}, "id": {id}}}"#)];
            }
            vec![
                r#"{"event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/stick/x"}}"#
                    .into(),
                format!(r#"{{"return": "stale", "id": {}}}"#, id - 1),
                r#"{"event": "DEVICE_DELETED", "data": {"device": "stick"}}"#.into(),
                format!(r#"{{"return": {{"done": true}}, "id": {id}}}"#),
            ]
        });
        let mut qmp = Qmp::connect("m", &socket, Duration::from_secs(10)).expect("connects");
        let value = qmp
            .execute("device_del", Some(json!({"id": "stick"})))
            .expect("the command succeeds");
        assert_eq!(value, json!({"done": true}));

        let event = qmp
            .wait_event(
                "DEVICE_DELETED",
                |data| data["device"] == "stick",
                Duration::from_millis(1),
            )
            .expect("the event that came during the command is kept");
        assert_eq!(event.data, json!({"device": "stick"}));
        let missing = qmp
            .wait_event(
                "DEVICE_DELETED",
                |data| data["device"] == "stick",
                Duration::from_millis(50),
            )
            .expect_err("the event was taken already");
        let message = missing.to_string();
        assert!(
            message.contains("DEVICE_DELETED") && message.contains("qmp.sock"),
            "{message}"
        );
        assert!(
            matches!(&missing, QmpError::EventTimeout { seen, .. } if seen == &["DEVICE_DELETED"]),
            "the unmatched event is still kept: {missing:?}"
        );

        drop(qmp);
        let requests = server.join().expect("the fake QEMU ends");
        let commands: Vec<&str> = requests
            .iter()
            .map(|r| r["execute"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(commands, ["qmp_capabilities", "device_del"]);
    }

    #[test]
    fn a_refusal_names_the_machine_the_command_and_qemus_reason() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (socket, server) = fake_qemu(dir.path(), |request, id| {
            if request["execute"] == "qmp_capabilities" {
                return vec![format!(r#"{{"return": {{}}, "id": {id}}}"#)];
            }
            vec![format!(
                r#"{{"error": {{"class": "DeviceNotFound", "desc": "Device 'stick' not found"}}, "id": {id}}}"#
            )]
        });
        let mut qmp = Qmp::connect("host0", &socket, Duration::from_secs(10)).expect("connects");
        let error = qmp
            .execute("device_del", Some(json!({"id": "stick"})))
            .expect_err("QEMU refuses");
        assert!(
            matches!(&error, QmpError::Refused { class, .. } if class == "DeviceNotFound"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("host0")
                && message.contains("`device_del`")
                && message.contains("Device 'stick' not found"),
            "{message}"
        );
        drop(qmp);
        server.join().expect("the fake QEMU ends");
    }

    #[test]
    fn connecting_to_a_socket_nobody_creates_fails_at_the_deadline() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = dir.path().join("absent.sock");
        let started = Instant::now();
        let error =
            Qmp::connect("m", &socket, Duration::from_millis(100)).expect_err("nobody listens");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&error, QmpError::Connect { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{error:?}"
        );
        assert!(error.to_string().contains("absent.sock"), "{error}");
    }
}
