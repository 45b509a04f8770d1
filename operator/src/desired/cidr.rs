//! CIDR arithmetic for the firewall: which denied ranges fall inside which allowed ones.

use std::net::IpAddr;

/// An IPv4 or IPv6 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix`; `None` when it is not a CIDR.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// True when every address of `other` is in `self`.
    #[must_use]
    pub fn contains(&self, other: &Cidr) -> bool {
        if other.prefix < self.prefix {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => same_prefix(
                u128::from(u32::from(a)) << 96,
                u128::from(u32::from(b)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                same_prefix(u128::from(a), u128::from(b), self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn c(text: &str) -> Cidr {
        Cidr::parse(text).expect("cidr")
    }

    #[test]
    fn containment_by_prefix_and_family() {
        assert!(c("0.0.0.0/0").contains(&c("203.0.113.0/24")));
        assert!(c("10.0.0.0/8").contains(&c("10.1.2.3/32")));
        assert!(!c("10.0.0.0/8").contains(&c("11.0.0.0/24")));
        assert!(!c("10.0.0.0/24").contains(&c("10.0.0.0/16")));
        assert!(c("10.0.0.0/24").contains(&c("10.0.0.0/24")));
        assert!(c("::/0").contains(&c("2001:db8::/32")));
        assert!(!c("::/0").contains(&c("10.0.0.0/8")));
    }

    #[test]
    fn refuses_what_is_not_a_cidr() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "::/129", "x/8", "10.0.0.0/-1"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
