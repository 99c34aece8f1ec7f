use super::*;
use core::mem::{offset_of, size_of};
use std::collections::VecDeque;

use abi::xen::console::XenconsInterface;
use proptest::prelude::*;

fn page() -> Box<XenconsShared> {
    Box::new(XenconsShared {
        input: [const { AtomicU8::new(0) }; XENCONS_IN_SIZE],
        output: [const { AtomicU8::new(0) }; XENCONS_OUT_SIZE],
        in_cons: AtomicU32::new(0),
        in_prod: AtomicU32::new(0),
        out_cons: AtomicU32::new(0),
        out_prod: AtomicU32::new(0),
    })
}

#[test]
fn layout_matches_xencons_interface() {
    assert_eq!(size_of::<XenconsShared>(), size_of::<XenconsInterface>());
    assert_eq!(
        offset_of!(XenconsShared, output),
        offset_of!(XenconsInterface, out)
    );
    assert_eq!(
        offset_of!(XenconsShared, in_cons),
        offset_of!(XenconsInterface, in_cons)
    );
    assert_eq!(
        offset_of!(XenconsShared, in_prod),
        offset_of!(XenconsInterface, in_prod)
    );
    assert_eq!(
        offset_of!(XenconsShared, out_cons),
        offset_of!(XenconsInterface, out_cons)
    );
    assert_eq!(
        offset_of!(XenconsShared, out_prod),
        offset_of!(XenconsInterface, out_prod)
    );
}

#[test]
fn output_fills_then_drains_across_the_index_wrap() {
    let p = page();
    // Start just below u32::MAX: indices wrap, slots are masked.
    let start = u32::MAX - 5;
    p.out_prod.store(start, Ordering::SeqCst);
    p.out_cons.store(start, Ordering::SeqCst);
    let data: Vec<u8> = (0..3000u32).map(|i| (i & 0xff) as u8).collect();
    assert_eq!(p.write_output(&data), Ok(XENCONS_OUT_SIZE));
    assert_eq!(p.write_output(b"x"), Ok(0), "full");
    assert_eq!(p.output_pending(), Ok(XENCONS_OUT_SIZE));
    let mut buf = vec![0u8; 5000];
    assert_eq!(p.read_output(&mut buf), Ok(XENCONS_OUT_SIZE));
    assert_eq!(&buf[..XENCONS_OUT_SIZE], &data[..XENCONS_OUT_SIZE]);
    assert_eq!(p.out_cons.load(Ordering::SeqCst), start.wrapping_add(2048));
    assert_eq!(p.output_pending(), Ok(0));
    // Slot of the first byte: (u32::MAX - 5) & 2047.
    assert_eq!(p.output[2042].load(Ordering::SeqCst), 0);
}

#[test]
fn input_goes_the_other_way() {
    let p = page();
    assert_eq!(p.write_input(b"ls\n"), Ok(3));
    let mut buf = [0u8; 8];
    assert_eq!(p.read_input(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"ls\n");
    assert_eq!(p.read_input(&mut buf), Ok(0));
    assert_eq!(p.write_input(&[b'a'; 2000]), Ok(XENCONS_IN_SIZE));
}

#[test]
fn corrupt_indices_are_reported_and_can_be_discarded() {
    let p = page();
    p.out_prod.store(5000, Ordering::SeqCst); // claims 5000 bytes in a 2048 ring
    let mut buf = [0u8; 16];
    assert_eq!(
        p.read_output(&mut buf),
        Err(RingCorrupt {
            prod: 5000,
            cons: 0
        })
    );
    assert_eq!(p.out_cons.load(Ordering::SeqCst), 0, "nothing consumed");
    p.discard_output();
    assert_eq!(p.read_output(&mut buf), Ok(0));
    p.in_cons.store(10, Ordering::SeqCst); // consumer ahead of producer
    assert!(p.write_input(b"x").is_err());
}

proptest! {
    /// Any interleaving of writes and reads of any sizes, from any start
    /// index: the reader gets exactly the bytes written, in order, and
    /// the writer never overwrites unread bytes.
    #[test]
    fn ring_is_a_fifo(start in any::<u32>(),
                      ops in proptest::collection::vec((any::<bool>(), 0usize..3000), 0..60)) {
        let p = page();
        p.out_prod.store(start, Ordering::SeqCst);
        p.out_cons.store(start, Ordering::SeqCst);
        let mut model = VecDeque::new();
        let mut next = 0u8;
        for (write, len) in ops {
            if write {
                let data: Vec<u8> = (0..len).map(|_| { next = next.wrapping_add(1); next }).collect();
                let n = p.write_output(&data).unwrap();
                prop_assert_eq!(n, len.min(XENCONS_OUT_SIZE - model.len()));
                model.extend(&data[..n]);
                next = next.wrapping_sub(u8::try_from((len - n) % 256).unwrap());
            } else {
                let mut buf = vec![0u8; len];
                let n = p.read_output(&mut buf).unwrap();
                prop_assert_eq!(n, len.min(model.len()));
                let want: Vec<u8> = model.drain(..n).collect();
                prop_assert_eq!(&buf[..n], &want[..]);
            }
            prop_assert_eq!(p.output_pending().unwrap(), model.len());
        }
    }

    /// The history keeps exactly the last N bytes pushed.
    #[test]
    fn history_keeps_the_tail(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..40), 0..30)) {
        let mut h = History::<64>::new();
        let mut all = Vec::new();
        for c in &chunks {
            h.push(c);
            all.extend_from_slice(c);
        }
        let (a, b) = h.contents();
        let kept: Vec<u8> = a.iter().chain(b).copied().collect();
        prop_assert_eq!(&kept[..], &all[all.len().saturating_sub(64)..]);
        prop_assert_eq!(h.total(), all.len() as u64);
    }
}

#[test]
fn lines_are_split_and_bounded() {
    let mut a = LineAssembler::<8>::new();
    let mut lines = Vec::new();
    a.feed(b"one\r\ntw", |l| lines.push(l.to_vec()));
    a.feed(b"o\n0123456789\n", |l| lines.push(l.to_vec()));
    a.feed(b"tail", |l| lines.push(l.to_vec()));
    a.flush(|l| lines.push(l.to_vec()));
    a.flush(|l| lines.push(l.to_vec()));
    let want: Vec<&[u8]> = vec![b"one", b"two", b"01234567", b"89", b"tail"];
    assert_eq!(lines, want);
}
