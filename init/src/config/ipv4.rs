//! IPv4 addresses with a prefix length (`192.168.1.11/24`), as a host's static address is
//! written in the configuration.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An address and the length of its subnet's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The host's address.
    pub address: Ipv4Addr,
    /// The prefix length, 1 to 32.
    pub prefix: u8,
}

/// Why a text is no `a.b.c.d/len`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/len` after the address.
    #[error("has no prefix length after the address")]
    NoPrefix,
    /// The part before `/` is no dotted IPv4 address.
    #[error("does not start with an IPv4 address a.b.c.d")]
    BadAddress,
    /// The part after `/` is no number from 1 to 32.
    #[error("has a prefix length that is not a number from 1 to 32")]
    BadPrefix,
    /// The address is its subnet's network or broadcast address, which no host can have.
    #[error("is the network or broadcast address of its subnet, not a host's")]
    NotAHostAddress,
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Ipv4Cidr, CidrError> {
        let (address, prefix) = text.split_once('/').ok_or(CidrError::NoPrefix)?;
        let address: Ipv4Addr = address.parse().map_err(|_| CidrError::BadAddress)?;
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::BadPrefix)?;
        if !(1..=32).contains(&prefix) {
            return Err(CidrError::BadPrefix);
        }
        let cidr = Ipv4Cidr { address, prefix };
        // /31 and /32 have no network or broadcast address (RFC 3021).
        let reserved = [cidr.network(), cidr.broadcast()];
        if prefix <= 30 && reserved.contains(&address) {
            return Err(CidrError::NotAHostAddress);
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Ipv4Cidr {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The subnet's first address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }

    /// The subnet's last address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !self.mask())
    }

    /// Whether `other` is in this address's subnet.
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        u32::from(other) & self.mask() == u32::from(self.address) & self.mask()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_prefixes_are_parsed() {
        let cidr: Ipv4Cidr = "192.168.1.11/24".parse().unwrap();
        assert_eq!(cidr.address, Ipv4Addr::new(192, 168, 1, 11));
        assert_eq!(cidr.prefix, 24);
        assert_eq!(cidr.network(), Ipv4Addr::new(192, 168, 1, 0));
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(192, 168, 1, 255));
        assert!(cidr.contains(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(!cidr.contains(Ipv4Addr::new(192, 168, 2, 1)));
        assert_eq!(cidr.to_string(), "192.168.1.11/24");
        assert!("10.0.0.0/32".parse::<Ipv4Cidr>().is_ok());
        assert!("10.0.0.1/31".parse::<Ipv4Cidr>().is_ok());
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let parse = |text: &str| text.parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(parse("192.168.1.11"), CidrError::NoPrefix);
        assert_eq!(parse("192.168.1/24"), CidrError::BadAddress);
        assert_eq!(parse("192.168.01.1/24"), CidrError::BadAddress);
        assert_eq!(parse("192.168.1.11/33"), CidrError::BadPrefix);
        assert_eq!(parse("192.168.1.11/0"), CidrError::BadPrefix);
        assert_eq!(parse("192.168.1.0/24"), CidrError::NotAHostAddress);
        assert_eq!(parse("192.168.1.255/24"), CidrError::NotAHostAddress);
    }
}
