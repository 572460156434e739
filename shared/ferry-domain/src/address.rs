//! Which network addresses a task's endpoints may point at.
//!
//! An endpoint's host is the user's to choose, and the workers connect to it from inside the
//! deployment: a host naming the link-local range would reach the instance and task metadata
//! services (169.254.169.254, ECS's 169.254.170.2, EC2's IPv6 fd00:ec2::254) with the worker's
//! own credentials behind them. Those ranges are refused unless the deployment allows chosen
//! ones (`FERRY_ENDPOINT_ALLOW`, a comma-separated list of CIDR ranges).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A CIDR range, `10.0.0.0/8` or `fd00::/8` (a bare address is a range of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?
        };
        Ok(Self { network, prefix })
    }
}

/// The ranges refused unless allowed: link-local (where the metadata services live) and EC2's
/// IPv6 metadata address.
const REFUSED: [(IpRange, &str); 3] = [
    (
        IpRange::v4(169, 254, 0, 0, 16),
        "link-local, where the instance and task metadata services answer",
    ),
    (
        IpRange {
            network: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
            prefix: 10,
        },
        "IPv6 link-local",
    ),
    (
        IpRange {
            network: IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
            prefix: 128,
        },
        "the EC2 instance metadata service's IPv6 address",
    ),
];

/// An address an endpoint may not point at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {why}")]
pub struct Refused {
    pub address: IpAddr,
    pub why: &'static str,
}

/// The ranges a deployment allows on top of the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<IpRange>,
}

impl AddressPolicy {
    /// `list`: comma-separated CIDR ranges to allow even though they are refused by default.
    pub fn allowing(list: &str) -> Result<Self, String> {
        Ok(Self {
            allowed: list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether an endpoint may connect to `ip` (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allowed.iter().any(|r| r.contains(ip)) {
            return Ok(());
        }
        match REFUSED.iter().find(|(r, _)| r.contains(ip)) {
            Some((_, why)) => Err(Refused { address: ip, why }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_by_default() {
        let p = AddressPolicy::default();
        for bad in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
        ] {
            let e = p.check(ip(bad)).unwrap_err();
            assert!(
                e.to_string().contains("169.254") || e.to_string().contains(':'),
                "{e}"
            );
        }
        for ok in [
            "127.0.0.1",
            "10.0.0.5",
            "172.31.0.2",
            "169.253.255.255",
            "169.255.0.0",
            "::1",
            "fd00:ec2::253",
            "2001:db8::1",
        ] {
            assert_eq!(p.check(ip(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn a_deployment_may_allow_chosen_ranges() {
        let p = AddressPolicy::allowing("169.254.10.0/24, fe80::/10").unwrap();
        assert_eq!(p.check(ip("169.254.10.7")), Ok(()));
        assert_eq!(p.check(ip("fe80::2")), Ok(()));
        assert!(p.check(ip("169.254.169.254")).is_err());
        assert!(AddressPolicy::allowing("169.254.0.0/33").is_err());
        assert!(AddressPolicy::allowing("nonsense").is_err());
        assert_eq!(
            AddressPolicy::allowing(" ").unwrap(),
            AddressPolicy::default()
        );
        let everything = AddressPolicy::allowing("0.0.0.0/0,::/0").unwrap();
        assert_eq!(everything.check(ip("169.254.169.254")), Ok(()));
    }
}
