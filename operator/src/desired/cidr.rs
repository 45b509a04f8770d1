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

    /// True when the address is the network's own (no host bits set) and is not an IPv4
    /// address written as IPv6 (`::ffff:10.0.0.0/104`), which network plugins read as IPv4.
    #[must_use]
    pub fn is_network(&self) -> bool {
        let plain = match self.addr {
            IpAddr::V4(_) => true,
            IpAddr::V6(a) => a.to_ipv4_mapped().is_none(),
        };
        plain && self.halves_base() == self.addr
    }

    /// The address with every bit past the prefix cleared.
    fn halves_base(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
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

impl Cidr {
    /// The two ranges one bit longer that make up this one; `None` for a single address.
    #[must_use]
    pub fn halves(&self) -> Option<(Cidr, Cidr)> {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix >= max {
            return None;
        }
        let prefix = self.prefix + 1;
        let with_bit = |set: bool| -> Cidr {
            let addr = match self.addr {
                IpAddr::V4(a) => {
                    let bit = 1u32 << (32 - u32::from(prefix));
                    let base = u32::from(a) & !(bit | (bit - 1));
                    IpAddr::V4((if set { base | bit } else { base }).into())
                }
                IpAddr::V6(a) => {
                    let bit = 1u128 << (128 - u32::from(prefix));
                    let base = u128::from(a) & !(bit | (bit - 1));
                    IpAddr::V6((if set { base | bit } else { base }).into())
                }
            };
            Cidr { addr, prefix }
        };
        Some((with_bit(false), with_bit(true)))
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
    fn a_network_has_no_host_bits_and_no_mapped_ipv4() {
        assert!(c("10.0.0.0/8").is_network());
        assert!(c("0.0.0.0/0").is_network());
        assert!(c("10.1.2.3/32").is_network());
        assert!(!c("10.1.2.3/8").is_network());
        assert!(c("fc00::/7").is_network());
        assert!(!c("::ffff:10.0.0.0/104").is_network());
        assert!(!c("2001:db8::1/32").is_network());
    }

    #[test]
    fn halves_split_a_range_in_two() {
        let (low, high) = c("10.0.0.0/8").halves().expect("halves");
        assert_eq!((low, high), (c("10.0.0.0/9"), c("10.128.0.0/9")));
        let (low, high) = c("fc00::/7").halves().expect("halves");
        assert_eq!((low, high), (c("fc00::/8"), c("fd00::/8")));
        assert_eq!(c("10.1.2.3/32").halves(), None);
    }

    #[test]
    fn refuses_what_is_not_a_cidr() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "::/129", "x/8", "10.0.0.0/-1"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
