//! The hypercall door over a simulated dom0 and domU: any hypercall
//! number and sub-op, any argument registers in either calling
//! convention, any guest memory contents, any caller, any order.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use xen_core::hypercall::HypercallRegs;
use xen_core_fuzz::{Arg, Door, Who, MAX_STORE};

#[derive(Arbitrary, Debug)]
enum Step {
    /// The guest writes its memory (hypercall arguments, grant entries,
    /// shared info...).
    Store { who: Who, gpa: Arg, bytes: Vec<u8> },
    /// A 64-bit hypercall: RAX, RDI, RSI, RDX, R10, R8.
    Call64 { who: Who, nr: Arg, args: [Arg; 5] },
    /// A 32-bit hypercall: EAX, EBX, ECX, EDX, ESI, EDI (upper halves junk).
    Call32 {
        who: Who,
        nr: Arg,
        args: [Arg; 5],
        junk: u32,
    },
    /// From user mode (CPL 3).
    User { who: Who, nr: Arg },
    /// Time passes.
    Tick(u32),
}

fuzz_target!(|steps: Vec<Step>| Door::run(steps, step));

fn step(door: &mut Door, step: Step) {
    match step {
        Step::Store { who, gpa, bytes } => {
            let n = bytes.len().min(MAX_STORE);
            door.store(who.domid(), gpa.value(), &bytes[..n]);
        }
        Step::Call64 { who, nr, args } => {
            door.call64(who.domid(), nr.value(), args.map(Arg::value));
        }
        Step::Call32 {
            who,
            nr,
            args,
            junk,
        } => {
            let r = |a: Arg| (u64::from(junk) << 32) | (a.value() & 0xffff_ffff);
            let regs = HypercallRegs {
                rax: r(nr),
                rbx: r(args[0]),
                rcx: r(args[1]),
                rdx: r(args[2]),
                rsi: r(args[3]),
                rdi: r(args[4]),
                r8: u64::MAX,
                r10: u64::MAX,
                long_mode: false,
                cpl: 0,
            };
            door.call(who.domid(), regs);
        }
        Step::User { who, nr } => {
            let regs = HypercallRegs {
                rax: nr.value(),
                long_mode: true,
                cpl: 3,
                ..HypercallRegs::default()
            };
            door.call(who.domid(), regs);
        }
        Step::Tick(ns) => door.tick(ns),
    }
}
