//! Table tests: for each mapping x filtering combination, the NAT box admits and drops exactly
//! the packets RFC 4787 says it should; plus timers, refresh, allocation and reboot.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use pilot_sim::{Filtering, Mapping, NatBox, NatConfig, NatDrop, PortAllocation};

const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);

fn addr(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

/// The internal endpoint and three remotes: R1, R1 on another port, another host R2.
fn endpoints() -> [SocketAddrV4; 4] {
    [
        addr("10.0.0.2:5000"),
        addr("203.0.113.1:3478"),
        addr("203.0.113.1:3479"),
        addr("203.0.113.2:3478"),
    ]
}

const MAPPINGS: [Mapping; 3] = [
    Mapping::EndpointIndependent,
    Mapping::AddressDependent,
    Mapping::AddressPortDependent,
];
const FILTERINGS: [Filtering; 3] = [
    Filtering::EndpointIndependent,
    Filtering::AddressDependent,
    Filtering::AddressPortDependent,
];

#[test]
fn mapping_reuse_follows_rfc4787_section_4_1() {
    let [internal, r1, r1_other_port, r2] = endpoints();
    for mapping in MAPPINGS {
        for filtering in FILTERINGS {
            let mut nat = NatBox::new(NatConfig::new(mapping, filtering), PUBLIC, 1);
            let now = Instant::now();
            let to_r1 = nat.outbound(now, internal, r1).unwrap();
            let to_r1_port = nat.outbound(now, internal, r1_other_port).unwrap();
            let to_r2 = nat.outbound(now, internal, r2).unwrap();
            assert!(to_r1.created);
            assert_eq!(*to_r1.external.ip(), PUBLIC);

            // EIM reuses one mapping for everything; ADM per remote IP; APDM per IP and port.
            let (same_ip_reused, other_ip_reused) = match mapping {
                Mapping::EndpointIndependent => (true, true),
                Mapping::AddressDependent => (true, false),
                Mapping::AddressPortDependent => (false, false),
            };
            let case = format!("{mapping:?}/{filtering:?}");
            assert_eq!(
                to_r1.external == to_r1_port.external,
                same_ip_reused,
                "{case}"
            );
            assert_eq!(to_r1.external == to_r2.external, other_ip_reused, "{case}");
            assert_eq!(!to_r1_port.created, same_ip_reused, "{case}");
        }
    }
}

#[test]
fn filtering_admits_exactly_per_rfc4787_section_5() {
    let [internal, r1, r1_other_port, r2] = endpoints();
    for mapping in MAPPINGS {
        for filtering in FILTERINGS {
            let mut nat = NatBox::new(NatConfig::new(mapping, filtering), PUBLIC, 2);
            let now = Instant::now();
            let port = nat.outbound(now, internal, r1).unwrap().external.port();
            let case = format!("{mapping:?}/{filtering:?}");

            // The remote the internal host sent to is always admitted.
            assert_eq!(nat.inbound(now, port, r1), Ok(internal), "{case}");

            let (port_admitted, host_admitted) = match filtering {
                Filtering::EndpointIndependent => (true, true),
                Filtering::AddressDependent => (true, false),
                Filtering::AddressPortDependent => (false, false),
            };
            let expect = |admitted: bool| {
                if admitted {
                    Ok(internal)
                } else {
                    Err(NatDrop::Filtered)
                }
            };
            assert_eq!(
                nat.inbound(now, port, r1_other_port),
                expect(port_admitted),
                "{case}"
            );
            assert_eq!(nat.inbound(now, port, r2), expect(host_admitted), "{case}");

            // Nothing is admitted on a port without a mapping.
            let unused = if port == 65_535 { 1024 } else { port + 1 };
            assert_eq!(
                nat.inbound(now, unused, r1),
                Err(NatDrop::NoMapping),
                "{case}"
            );
        }
    }
}

#[test]
fn mappings_expire_unless_outbound_traffic_refreshes_them() {
    let [internal, r1, _, _] = endpoints();
    let timeout = Duration::from_secs(30);
    let config = NatConfig::port_restricted_cone().timeout(timeout);
    let mut nat = NatBox::new(config, PUBLIC, 3);
    let start = Instant::now();
    let port = nat.outbound(start, internal, r1).unwrap().external.port();

    // Inbound traffic does not refresh (RFC 4787 REQ-6 requires only outbound refresh).
    assert!(
        nat.inbound(start + Duration::from_secs(20), port, r1)
            .is_ok()
    );
    assert_eq!(
        nat.inbound(start + timeout, port, r1),
        Err(NatDrop::NoMapping)
    );

    // Outbound traffic before the deadline keeps it alive for another full timeout.
    let mut nat = NatBox::new(config, PUBLIC, 3);
    let port = nat.outbound(start, internal, r1).unwrap().external.port();
    let refresh = start + Duration::from_secs(29);
    assert!(!nat.outbound(refresh, internal, r1).unwrap().created);
    assert!(
        nat.inbound(refresh + Duration::from_secs(29), port, r1)
            .is_ok()
    );
    assert_eq!(nat.live_mappings(refresh + Duration::from_secs(29)), 1);
    assert_eq!(nat.live_mappings(refresh + timeout), 0);
}

#[test]
fn filter_entries_expire_per_remote() {
    let [internal, r1, _, r2] = endpoints();
    let config = NatConfig::port_restricted_cone().timeout(Duration::from_secs(120));
    let mut nat = NatBox::new(config, PUBLIC, 4);
    let start = Instant::now();
    let port = nat.outbound(start, internal, r1).unwrap().external.port();
    // Traffic to R2 keeps the (endpoint-independent) mapping alive but not R1's filter entry.
    nat.outbound(start + Duration::from_secs(100), internal, r2)
        .unwrap();
    let later = start + Duration::from_secs(130);
    assert_eq!(nat.inbound(later, port, r1), Err(NatDrop::Filtered));
    assert_eq!(nat.inbound(later, port, r2), Ok(internal));
}

#[test]
fn port_allocation_policies() {
    let [internal, r1, _, _] = endpoints();
    let now = Instant::now();

    // Preserving keeps the internal port when free, and picks another when it is taken.
    let mut nat = NatBox::new(NatConfig::full_cone(), PUBLIC, 5);
    assert_eq!(
        nat.outbound(now, internal, r1).unwrap().external.port(),
        5000
    );
    let second = nat
        .outbound(now, addr("10.0.0.3:5000"), r1)
        .unwrap()
        .external
        .port();
    assert_ne!(second, 5000);

    // Sequential hands out consecutive ports, one per destination under APDM.
    let ports = allocate_ten(NatConfig::symmetric_sequential(), 6);
    assert!(
        ports.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{ports:?}"
    );

    // Random ports are unique and not a run.
    let ports = allocate_ten(NatConfig::symmetric().allocation(PortAllocation::Random), 7);
    let mut unique = ports.clone();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    assert!(
        !ports.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{ports:?}"
    );
}

fn allocate_ten(config: NatConfig, seed: u64) -> Vec<u16> {
    let mut nat = NatBox::new(config, PUBLIC, seed);
    let now = Instant::now();
    let internal = addr("10.0.0.2:5000");
    (0..10)
        .map(|index| {
            let remote = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 1000 + index);
            nat.outbound(now, internal, remote).unwrap().external.port()
        })
        .collect()
}

#[test]
fn exhausted_port_range_drops_new_flows() {
    let mut config = NatConfig::symmetric_sequential();
    config.port_min = 2000;
    config.port_max = 2002;
    let mut nat = NatBox::new(config, PUBLIC, 8);
    let now = Instant::now();
    let internal = addr("10.0.0.2:5000");
    for port in 0..3 {
        nat.outbound(now, internal, SocketAddrV4::new(PUBLIC, 100 + port))
            .unwrap();
    }
    let fourth = nat.outbound(now, internal, addr("203.0.113.9:1"));
    assert_eq!(fourth, Err(NatDrop::PortsExhausted));
    // Once the mappings expire their ports are reused.
    let later = now + config.mapping_timeout;
    assert!(nat.outbound(later, internal, addr("203.0.113.9:1")).is_ok());
}

#[test]
fn reboot_and_address_change_forget_mappings() {
    let [internal, r1, _, _] = endpoints();
    let now = Instant::now();
    let mut nat = NatBox::new(NatConfig::full_cone(), PUBLIC, 9);
    let port = nat.outbound(now, internal, r1).unwrap().external.port();
    nat.reboot();
    assert_eq!(nat.inbound(now, port, r1), Err(NatDrop::NoMapping));
    assert!(nat.outbound(now, internal, r1).unwrap().created);

    let new_ip = Ipv4Addr::new(198, 51, 100, 99);
    nat.set_public_ip(new_ip);
    let mapped = nat.outbound(now, internal, r1).unwrap();
    assert!(mapped.created);
    assert_eq!(*mapped.external.ip(), new_ip);
}

#[test]
fn udp_firewall_drops_both_directions() {
    let [internal, r1, _, _] = endpoints();
    let mut nat = NatBox::new(NatConfig::udp_blocked(), PUBLIC, 10);
    let now = Instant::now();
    assert_eq!(nat.outbound(now, internal, r1), Err(NatDrop::Firewall));
    assert_eq!(nat.inbound(now, 5000, r1), Err(NatDrop::Firewall));
}

#[test]
fn inbound_refresh_is_optional() {
    let [internal, r1, _, _] = endpoints();
    let mut config = NatConfig::full_cone().timeout(Duration::from_secs(30));
    config.inbound_refresh = true;
    let mut nat = NatBox::new(config, PUBLIC, 11);
    let start = Instant::now();
    let port = nat.outbound(start, internal, r1).unwrap().external.port();
    // Each admitted inbound packet now restarts the timer.
    for step in 1..=4 {
        let at = start + Duration::from_secs(25 * step);
        assert_eq!(nat.inbound(at, port, r1), Ok(internal), "step {step}");
    }
    assert_eq!(
        nat.inbound(start + Duration::from_secs(130), port, r1),
        Err(NatDrop::NoMapping)
    );
}
