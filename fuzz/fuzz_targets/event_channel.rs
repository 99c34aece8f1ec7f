//! Event channels through the door and the delivery side: both domains
//! allocate, bind, send, unmask, close, poll and re-target ports in any
//! order, write their shared info (the pending and mask bitmaps) at will,
//! while the hypervisor raises VIRQs, delivers upcalls, fires timers and
//! destroys the domU.
#![no_main]

use abi::xen::event_channel::{
    self as ec, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu,
    EvtchnBindVirq, EvtchnClose, EvtchnSend, EvtchnStatus, EvtchnUnmask,
};
use abi::xen::hvm::{XenHvmEvtchnUpcallVector, HVMOP_SET_EVTCHN_UPCALL_VECTOR};
use abi::xen::hypercall::{EVENT_CHANNEL_OP, HVM_OP, MEMORY_OP, SCHED_OP};
use abi::xen::memory::{XenAddToPhysmap, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP};
use abi::xen::sched::{SchedPoll, SCHEDOP_POLL};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use xen_core_fuzz::{Door, Who, BUF2, EXTRA_GFN, MAX_STORE};

/// Xen's `NR_VIRQS`: VIRQ numbers the hypervisor raises are below it.
const NR_VIRQS: u32 = 24;
/// Where each domain maps its shared info.
const SHARED_INFO_GPA: u64 = EXTRA_GFN << 12;

#[derive(Arbitrary, Debug)]
enum Step {
    AllocUnbound {
        who: Who,
        dom: Who,
        remote: Who,
    },
    BindInterdomain {
        who: Who,
        remote: Who,
        port: u16,
    },
    BindVirq {
        who: Who,
        virq: u8,
        vcpu: u8,
    },
    BindIpi {
        who: Who,
        vcpu: u8,
    },
    BindVcpu {
        who: Who,
        port: u16,
        vcpu: u8,
    },
    Close {
        who: Who,
        port: u16,
    },
    Send {
        who: Who,
        port: u16,
    },
    Unmask {
        who: Who,
        port: u16,
    },
    Status {
        who: Who,
        dom: Who,
        port: u16,
    },
    /// `SCHEDOP_poll` on up to 8 ports, with a timeout.
    Poll {
        who: Who,
        ports: Vec<u16>,
        timeout: u32,
    },
    UpcallVector {
        who: Who,
        vcpu: u8,
        vector: u8,
    },
    /// Any event_channel_op with the argument bytes given.
    Raw {
        who: Who,
        cmd: u8,
        bytes: Vec<u8>,
    },
    /// The guest maps its shared info (where the bitmaps live)...
    MapSharedInfo {
        who: Who,
    },
    /// ...and writes it (pending and mask bits, selectors, anything).
    StoreSharedInfo {
        who: Who,
        offset: u16,
        bytes: Vec<u8>,
    },
    /// The hypervisor raises a VIRQ for one vCPU, or a global one.
    RaiseVirq {
        who: Who,
        virq: u8,
        vcpu: u8,
    },
    RaiseGlobalVirq {
        virq: u8,
    },
    /// The run loop enters a vCPU: the upcall it would inject.
    Enter {
        who: Who,
        vcpu: u8,
    },
    Tick(u32),
    DestroyDomU,
}

fn evtchn<T: zerocopy::IntoBytes + zerocopy::Immutable + ?Sized>(
    door: &mut Door,
    who: Who,
    cmd: u32,
    arg: &T,
) {
    door.op(who.domid(), EVENT_CHANNEL_OP, cmd, arg, 0);
}

fn step(door: &mut Door, s: Step) {
    let port = |p: u16| u32::from(p);
    match s {
        Step::AllocUnbound { who, dom, remote } => {
            let arg = EvtchnAllocUnbound {
                dom: dom.domid(),
                remote_dom: remote.domid(),
                port: 0,
            };
            evtchn(door, who, ec::EVTCHNOP_ALLOC_UNBOUND, &arg);
        }
        Step::BindInterdomain {
            who,
            remote,
            port: p,
        } => {
            let arg = EvtchnBindInterdomain {
                remote_dom: remote.domid(),
                pad0: 0,
                remote_port: port(p),
                local_port: 0,
            };
            evtchn(door, who, ec::EVTCHNOP_BIND_INTERDOMAIN, &arg);
        }
        Step::BindVirq { who, virq, vcpu } => {
            let arg = EvtchnBindVirq {
                virq: virq.into(),
                vcpu: vcpu.into(),
                port: 0,
            };
            evtchn(door, who, ec::EVTCHNOP_BIND_VIRQ, &arg);
        }
        Step::BindIpi { who, vcpu } => {
            evtchn(
                door,
                who,
                ec::EVTCHNOP_BIND_IPI,
                &EvtchnBindIpi {
                    vcpu: vcpu.into(),
                    port: 0,
                },
            );
        }
        Step::BindVcpu { who, port: p, vcpu } => {
            let arg = EvtchnBindVcpu {
                port: port(p),
                vcpu: vcpu.into(),
            };
            evtchn(door, who, ec::EVTCHNOP_BIND_VCPU, &arg);
        }
        Step::Close { who, port: p } => {
            evtchn(
                door,
                who,
                ec::EVTCHNOP_CLOSE,
                &EvtchnClose { port: port(p) },
            );
        }
        Step::Send { who, port: p } => {
            evtchn(door, who, ec::EVTCHNOP_SEND, &EvtchnSend { port: port(p) });
        }
        Step::Unmask { who, port: p } => {
            evtchn(
                door,
                who,
                ec::EVTCHNOP_UNMASK,
                &EvtchnUnmask { port: port(p) },
            );
        }
        Step::Status { who, dom, port: p } => {
            let arg = EvtchnStatus {
                dom: dom.domid(),
                pad0: 0,
                port: port(p),
                status: 0,
                vcpu: 0,
                u: [0; 8],
            };
            evtchn(door, who, ec::EVTCHNOP_STATUS, &arg);
        }
        Step::Poll {
            who,
            ports,
            timeout,
        } => {
            let ports: Vec<u32> = ports.iter().take(8).map(|&p| port(p)).collect();
            door.store(who.domid(), BUF2, zerocopy::IntoBytes::as_bytes(&ports[..]));
            let arg = SchedPoll {
                ports: BUF2,
                nr_ports: ports.len() as u32,
                pad0: 0,
                timeout: door.w.env.tsc + u64::from(timeout),
            };
            door.op(who.domid(), SCHED_OP, SCHEDOP_POLL, &arg, 0);
        }
        Step::UpcallVector { who, vcpu, vector } => {
            let arg = XenHvmEvtchnUpcallVector {
                vcpu: vcpu.into(),
                vector,
                pad0: [0; 3],
            };
            door.op(who.domid(), HVM_OP, HVMOP_SET_EVTCHN_UPCALL_VECTOR, &arg, 0);
        }
        Step::Raw { who, cmd, bytes } => {
            let n = bytes.len().min(MAX_STORE);
            evtchn(door, who, cmd.into(), &bytes[..n]);
        }
        Step::MapSharedInfo { who } => {
            let arg = XenAddToPhysmap {
                domid: abi::xen::domid::DOMID_SELF,
                size: 0,
                space: XENMAPSPACE_SHARED_INFO,
                idx: 0,
                gpfn: EXTRA_GFN,
            };
            door.op(who.domid(), MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &arg, 0);
        }
        Step::StoreSharedInfo { who, offset, bytes } => {
            let n = bytes.len().min(MAX_STORE);
            let gpa = SHARED_INFO_GPA + u64::from(offset % 4096);
            door.store(who.domid(), gpa, &bytes[..n]);
        }
        Step::RaiseVirq { who, virq, vcpu } => {
            // The hypervisor raises VIRQs it knows for vCPUs that exist.
            if let Some(d) = door.w.t.get_mut(who.domid()) {
                let vcpu = u32::from(vcpu) % d.vcpus().len().max(1) as u32;
                let virq = u32::from(virq) % NR_VIRQS;
                xen_core::event::raise_virq(d, &mut door.w.mem, virq, vcpu);
            }
        }
        Step::RaiseGlobalVirq { virq } => {
            let virq = u32::from(virq) % NR_VIRQS;
            xen_core::event::raise_global_virq(&mut door.w.t, &mut door.w.mem, virq);
        }
        Step::Enter { who, vcpu } => {
            if let Some(d) = door.w.t.get_mut(who.domid()) {
                if d.vcpu_may_run(vcpu.into()) {
                    xen_core::event::upcall_for_entry(d, &mut door.w.mem, vcpu.into());
                }
            }
        }
        Step::Tick(ns) => door.tick(ns),
        Step::DestroyDomU => {
            door.destroy_domu();
        }
    }
}

fuzz_target!(|steps: Vec<Step>| Door::run(steps, step));
