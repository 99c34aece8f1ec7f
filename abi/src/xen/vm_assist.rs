//! `vm_assist(cmd, type)` (`xen/include/public/xen.h`): a domain turns
//! on or off one of Xen's optional behaviours ("assists"), each a bit of
//! the domain's assist word. Both arguments are C `unsigned int`s.

/// `VMASST_CMD_enable`: turn the assist on.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `VMASST_CMD_disable`: turn the assist off.
pub const VMASST_CMD_DISABLE: u32 = 1;

/// `VMASST_TYPE_runstate_update_flag` (all guests): while Xen writes a
/// registered `vcpu_runstate_info`, its `state_entry_time` carries
/// [`super::vcpu::XEN_RUNSTATE_UPDATE`], so a guest reading it
/// concurrently can tell a torn copy and read again. The only assist Xen
/// offers HVM and PVH guests (`HVM_VM_ASSIST_MASK`).
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
