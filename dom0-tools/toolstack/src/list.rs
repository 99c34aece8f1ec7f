//! Every domain, following `CONTROL_OP_LIST`'s cursor.

use alloc::vec::Vec;

use abi::control::{DomainInfo, LIST_BATCH_MAX};
use abi::xen::domid::{DomId, DOMID_FIRST_RESERVED, DOMID_INVALID};
use abi::xen::errno::Errno;

use crate::hypervisor::Hypervisor;

/// Batches one listing may take: enough for every possible domid, so a
/// hypervisor whose cursor never ends cannot keep the caller looping.
const MAX_LIST_BATCHES: usize = DOMID_FIRST_RESERVED as usize / LIST_BATCH_MAX + 1;

/// All domains by ascending domid. `-EIO` if the hypervisor's answers do
/// not add up (an entry count above `LIST_BATCH_MAX`, a cursor that does
/// not move forward or never ends).
pub fn list_domains(hv: &mut impl Hypervisor) -> Result<Vec<DomainInfo>, Errno> {
    let mut domains = Vec::new();
    let mut cursor: DomId = 0;
    for _ in 0..MAX_LIST_BATCHES {
        let batch = hv.domain_list(cursor)?;
        let entries = batch
            .domains
            .get(..batch.nr_entries as usize)
            .ok_or(Errno::EIO)?;
        domains.extend_from_slice(entries);
        if batch.next_domid == DOMID_INVALID {
            return Ok(domains);
        }
        if batch.next_domid <= cursor {
            return Err(Errno::EIO);
        }
        cursor = batch.next_domid;
    }
    Err(Errno::EIO)
}
