//! `nettrunk` (issue 13): a guest on an 802.1Q trunk port. It listens on
//! vif 0 for `listen_ms=N` (default 20000) and reports each VLAN it sees
//! frames of (`nettrunk: rx vlan <V> from <mac>`, once per VLAN), then
//! sends one tagged broadcast in each VLAN of `send=V,W,...` (default
//! none) and one untagged frame if `untagged=1`, prints `nettrunk:
//! frames of vlan <V>: <n>` per VLAN seen, `nettrunk: untagged frames:
//! <n>, of other vlans: <n>` (VLANs not in `carried=V,W,...`) and
//! `nettrunk: done`, and powers off. The frames it sends carry the local experimental
//! EtherType 0x88b5, which no stack answers. Command line `ip=` is not
//! needed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::netfront::Netfront;
    use guest_pv_shim::arch::xenbus_front;
    use guest_pv_shim::{println, Boot, Events, Grants, ShutdownReason};

    /// Most distinct VLANs counted (the rest add to `other`).
    const MAX_VLANS: usize = 8;
    /// IEEE 802.1Q's TPID.
    const TPID: [u8; 2] = [0x81, 0x00];
    /// IEEE 802's local experimental EtherType.
    const EXPERIMENTAL: [u8; 2] = [0x88, 0xb5];

    /// Frames received per VLAN (VLAN 0: untagged).
    struct Tally {
        vlans: [(u16, u64); MAX_VLANS],
        used: usize,
        other: u64,
    }

    impl Tally {
        /// Counts a frame of `vlan`; whether it is the VLAN's first.
        fn count(&mut self, vlan: u16) -> bool {
            if let Some(slot) = self.vlans[..self.used].iter_mut().find(|s| s.0 == vlan) {
                slot.1 += 1;
                return false;
            }
            if self.used == MAX_VLANS {
                self.other += 1;
                return false;
            }
            self.vlans[self.used] = (vlan, 1);
            self.used += 1;
            true
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let setup = (Events::init(&xen), Grants::init(&xen, start_info.ram_end()));
        let (Ok(events), Ok(grants)) = setup else {
            println!("nettrunk: no events or grants");
            xen.shutdown(ShutdownReason::Crash)
        };
        let Ok(mut xs) = xenbus_front::connect(&events) else {
            println!("nettrunk: no store");
            xen.shutdown(ShutdownReason::Crash)
        };
        let mut front = match Netfront::connect(&mut xs, &events, &grants, 0) {
            Ok(f) => f,
            Err(e) => {
                println!("nettrunk: vif 0: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let listen_ms = start_info
            .cmdline_arg("listen_ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(20_000);
        println!("nettrunk: listening for {listen_ms} ms");
        let tally = listen(&mut front, listen_ms * 1_000_000);
        for vlan in start_info
            .cmdline_arg("send")
            .unwrap_or("")
            .split(',')
            .filter_map(|v| v.parse::<u16>().ok())
        {
            send(&mut front, Some(vlan));
        }
        if start_info.cmdline_arg("untagged") == Some("1") {
            send(&mut front, None);
        }
        report(&tally, start_info.cmdline_arg("carried").unwrap_or(""));
        println!("nettrunk: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }

    /// Receives for `window_ns`, counting frames by VLAN.
    fn listen(front: &mut Netfront, window_ns: u64) -> Tally {
        let mut tally = Tally {
            vlans: [(0, 0); MAX_VLANS],
            used: 0,
            other: 0,
        };
        let end = front.now().saturating_add(window_ns);
        let mut buf = [0u8; 1536];
        while front.now() < end {
            match front.recv(&mut buf) {
                Ok(Some(len)) => {
                    let Some(frame) = buf.get(..len) else {
                        continue;
                    };
                    note(&mut tally, frame);
                }
                Ok(None) => front.wait(Some(end)),
                Err(e) => {
                    println!("nettrunk: rx failed: {e}");
                    break;
                }
            }
        }
        tally
    }

    fn note(tally: &mut Tally, frame: &[u8]) {
        let vlan = match frame.get(12..16) {
            Some([0x81, 0x00, hi, lo]) => u16::from_be_bytes([hi & 0x0f, *lo]),
            _ => 0,
        };
        if tally.count(vlan) && vlan != 0 {
            let m = frame.get(6..12).unwrap_or(&[0; 6]);
            println!(
                "nettrunk: rx vlan {vlan} from {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
        }
    }

    /// One broadcast from our MAC, tagged with `vlan` or untagged.
    fn send(front: &mut Netfront, vlan: Option<u16>) {
        let mut frame = [0u8; 64];
        frame[..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&front.mac());
        let body = match vlan {
            Some(v) => {
                frame[12..14].copy_from_slice(&TPID);
                frame[14..16].copy_from_slice(&(v & 0x0fff).to_be_bytes());
                16
            }
            None => 12,
        };
        frame[body..body + 2].copy_from_slice(&EXPERIMENTAL);
        frame[body + 2..body + 10].copy_from_slice(b"nettrunk");
        while !front.can_send() {
            front.wait(Some(front.now() + 10_000_000));
        }
        match front.send(&frame) {
            Ok(()) => match vlan {
                Some(v) => println!("nettrunk: sent vlan {v}"),
                None => println!("nettrunk: sent untagged"),
            },
            Err(e) => println!("nettrunk: send failed: {e}"),
        }
    }

    /// Per VLAN seen, then the frames of VLANs outside `carried` (the
    /// trunk's list, `V,W,...`) and the untagged ones: both 0 on a trunk.
    fn report(tally: &Tally, carried: &str) {
        let is_carried = |vlan: u16| carried.split(',').any(|v| v.parse() == Ok(vlan));
        let (mut untagged, mut foreign) = (0, tally.other);
        for &(vlan, n) in &tally.vlans[..tally.used] {
            if vlan == 0 {
                untagged = n;
                continue;
            }
            println!("nettrunk: frames of vlan {vlan}: {n}");
            if !is_carried(vlan) {
                foreign += n;
            }
        }
        println!("nettrunk: untagged frames: {untagged}, of other vlans: {foreign}");
    }
}
