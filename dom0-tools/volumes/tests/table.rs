//! The volume table on an in-memory disk: layout, errors, repair, and a
//! model-checked sequence of creates and deletes.

use std::collections::BTreeMap;

use gpt_disk_io::gpt_disk_types::BlockSize;
use gpt_disk_io::BlockIoAdapter;
use proptest::prelude::*;
use volumes::{
    parse_size, Opened, Table, Volume, VolumeError, ALIGN_SECTORS, MAX_ENTRIES, SECTOR_BYTES,
};

const MIB: u64 = 1 << 20;

fn io(disk: &mut [u8]) -> BlockIoAdapter<&mut [u8]> {
    BlockIoAdapter::new(disk, BlockSize::BS_512)
}

fn blank(mib: u64) -> Vec<u8> {
    vec![0; usize::try_from(mib * MIB).unwrap()]
}

fn open(disk: &mut [u8]) -> (Table, Opened) {
    Table::open(io(disk), 42).unwrap()
}

fn sector(disk: &[u8], lba: u64) -> &[u8] {
    let start = usize::try_from(lba * SECTOR_BYTES).unwrap();
    &disk[start..start + 512]
}

#[test]
fn a_blank_disk_is_initialised_once() {
    let mut disk = blank(16);
    let (table, opened) = open(&mut disk);
    assert_eq!(opened, Opened::Initialised);
    assert!(table.list().is_empty());
    // Protective MBR: boot signature, one partition of type 0xEE.
    assert_eq!(&sector(&disk, 0)[510..], &[0x55, 0xaa]);
    assert_eq!(sector(&disk, 0)[446 + 4], 0xee);
    assert_eq!(&sector(&disk, 1)[..8], b"EFI PART");
    assert_eq!(&sector(&disk, 16 * 2048 - 1)[..8], b"EFI PART");
    let (again, opened) = open(&mut disk);
    assert_eq!(opened, Opened::Found);
    assert_eq!(again.disk_guid(), table.disk_guid());
    // 16 MiB less the first and last MiB (tables, alignment).
    assert_eq!(again.largest_free_bytes(), 14 * MIB);
}

#[test]
fn volumes_persist_and_are_aligned() {
    let mut disk = blank(64);
    let (mut table, _) = open(&mut disk);
    let a = table.create(io(&mut disk), "a", 3 * MIB).unwrap();
    let b = table.create(io(&mut disk), "data", 1).unwrap();
    assert_eq!((a.first_lba, a.sectors), (ALIGN_SECTORS, 3 * ALIGN_SECTORS));
    assert_eq!((b.first_lba, b.bytes()), (4 * ALIGN_SECTORS, MIB));
    assert_ne!(a.guid, b.guid);
    let (reopened, opened) = open(&mut disk);
    assert_eq!(opened, Opened::Found);
    assert_eq!(reopened.list(), vec![a.clone(), b.clone()]);
    assert_eq!(reopened.get("data"), Some(b));
    table.delete(io(&mut disk), "a").unwrap();
    assert_eq!(open(&mut disk).0.list().len(), 1);
    // The freed space is reused.
    let c = table.create(io(&mut disk), "c", 2 * MIB).unwrap();
    assert_eq!(c.first_lba, ALIGN_SECTORS);
}

#[test]
fn a_new_volume_reads_as_zeroes() {
    let mut disk = blank(16);
    let (mut table, _) = open(&mut disk);
    let old = table.create(io(&mut disk), "old", MIB).unwrap();
    let at = usize::try_from(old.first_lba * SECTOR_BYTES).unwrap();
    disk[at..at + 4096].fill(0xa5);
    table.delete(io(&mut disk), "old").unwrap();
    let new = table.create(io(&mut disk), "new", MIB).unwrap();
    assert_eq!(new.first_lba, old.first_lba);
    assert!(disk[at..at + usize::try_from(MIB).unwrap()]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn errors_are_named() {
    let mut disk = blank(16);
    let (mut table, _) = open(&mut disk);
    table.create(io(&mut disk), "a", 10 * MIB).unwrap();
    let err = |r: Result<Volume, VolumeError<_>>| r.unwrap_err();
    assert_eq!(
        err(table.create(io(&mut disk), "a", MIB)),
        VolumeError::NameTaken { name: "a".into() }
    );
    let full = err(table.create(io(&mut disk), "b", 5 * MIB));
    assert_eq!(
        full,
        VolumeError::DiskFull {
            requested: 5 * MIB,
            largest_free: 4 * MIB
        }
    );
    assert_eq!(
        full.to_string(),
        "the disk is full: no free space for 5MiB; the largest free space is 4MiB"
    );
    let large = err(table.create(io(&mut disk), "b", parse_size("1GiB").unwrap()));
    assert_eq!(
        large.to_string(),
        "1GiB is too large: the disk holds at most 14MiB of volumes"
    );
    assert!(matches!(
        err(table.create(io(&mut disk), "b", u64::MAX)),
        VolumeError::TooLarge { .. }
    ));
    assert_eq!(
        err(table.create(io(&mut disk), "b", 0)),
        VolumeError::BadSize
    );
    assert!(matches!(
        err(table.create(io(&mut disk), "a b", MIB)),
        VolumeError::BadName(_)
    ));
    assert_eq!(
        table.delete(io(&mut disk), "nope").unwrap_err().to_string(),
        "no volume named \"nope\""
    );
}

#[test]
fn the_entry_array_bounds_the_number_of_volumes() {
    let mut disk = blank(u64::from(MAX_ENTRIES) + 4);
    let (mut table, _) = open(&mut disk);
    for i in 0..MAX_ENTRIES {
        table.create(io(&mut disk), &format!("v{i}"), MIB).unwrap();
    }
    assert_eq!(
        table.create(io(&mut disk), "one-more", MIB).unwrap_err(),
        VolumeError::TooManyVolumes
    );
}

#[test]
fn a_damaged_copy_is_repaired_from_the_other() {
    let mut disk = blank(16);
    let (mut table, _) = open(&mut disk);
    let v = table.create(io(&mut disk), "keep", MIB).unwrap();
    // Primary header broken.
    disk[512 + 20] ^= 0xff;
    let (t, opened) = open(&mut disk);
    assert_eq!(
        (opened, t.list()),
        (Opened::RepairedPrimary, vec![v.clone()])
    );
    assert_eq!(open(&mut disk).1, Opened::Found);
    // Backup entry array broken.
    let backup_array = 16 * 2048 - 33;
    disk[usize::try_from(backup_array * SECTOR_BYTES).unwrap()] ^= 0xff;
    let (t, opened) = open(&mut disk);
    assert_eq!((opened, t.list()), (Opened::RepairedBackup, vec![v]));
    assert_eq!(open(&mut disk).1, Opened::Found);
}

#[test]
fn a_foreign_disk_is_left_untouched() {
    let mut disk = blank(16);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk[446 + 4] = 0x83; // an MBR Linux partition
    let before = disk.clone();
    assert_eq!(
        Table::open(io(&mut disk), 1).unwrap_err(),
        VolumeError::Foreign
    );
    assert!(disk == before);
}

#[test]
fn a_tiny_disk_is_refused() {
    let mut disk = blank(2);
    assert!(matches!(
        Table::open(io(&mut disk), 1),
        Err(VolumeError::DiskTooSmall { sectors: 4096 })
    ));
}

#[derive(Clone, Debug)]
enum Op {
    Create(u8, u64),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, 1u64..12).prop_map(|(n, mib)| Op::Create(n, mib)),
        (0u8..8).prop_map(Op::Delete),
    ]
}

/// The volumes lie in the usable sectors, aligned, without overlap, with
/// unique names.
fn check_layout(volumes: &[Volume], disk_sectors: u64) {
    let mut names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), volumes.len(), "names unique");
    for v in volumes {
        assert_eq!(v.first_lba % ALIGN_SECTORS, 0);
        assert_eq!(v.sectors % ALIGN_SECTORS, 0);
        assert!(v.first_lba >= 34 && v.first_lba + v.sectors <= disk_sectors - 33);
    }
    for w in volumes.windows(2) {
        assert!(
            w[0].first_lba + w[0].sectors <= w[1].first_lba,
            "no overlap"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn creates_and_deletes_follow_a_model(
        disk_mib in 8u64..48,
        ops in proptest::collection::vec(op(), 1..24),
    ) {
        let mut disk = blank(disk_mib);
        let (mut table, _) = open(&mut disk);
        let mut model: BTreeMap<String, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Create(n, mib) => {
                    let name = format!("vol{n}");
                    match table.create(io(&mut disk), &name, mib * MIB) {
                        Ok(v) => {
                            prop_assert!(!model.contains_key(&name));
                            prop_assert_eq!(v.bytes(), mib * MIB);
                            model.insert(name, mib * MIB);
                        }
                        Err(VolumeError::NameTaken { .. }) => prop_assert!(model.contains_key(&name)),
                        Err(VolumeError::DiskFull { largest_free, .. }) => {
                            prop_assert!(!model.contains_key(&name));
                            prop_assert!(largest_free < mib * MIB);
                        }
                        Err(VolumeError::TooLarge { max, .. }) => prop_assert!(max < mib * MIB),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Delete(n) => {
                    let name = format!("vol{n}");
                    let deleted = table.delete(io(&mut disk), &name).is_ok();
                    prop_assert_eq!(deleted, model.remove(&name).is_some());
                }
            }
            let listed = table.list();
            check_layout(&listed, table.disk_sectors());
            let sizes: BTreeMap<String, u64> =
                listed.iter().map(|v| (v.name.clone(), v.bytes())).collect();
            prop_assert_eq!(&sizes, &model);
            let (reopened, opened) = open(&mut disk);
            prop_assert_eq!(opened, Opened::Found);
            prop_assert_eq!(reopened.list(), listed);
        }
    }

    #[test]
    fn garbage_tables_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 512 * 34),
        tail in proptest::collection::vec(any::<u8>(), 512 * 33),
        keep_signature in any::<bool>(),
    ) {
        let mut disk = blank(8);
        open(&mut disk);
        let mut good = disk.clone();
        let mut start = bytes;
        if keep_signature {
            start[512..520].copy_from_slice(b"EFI PART");
        }
        good[..start.len()].copy_from_slice(&start);
        let end = good.len() - tail.len();
        good[end..].copy_from_slice(&tail);
        // Any outcome but a panic; an accepted table is consistent.
        if let Ok((t, _)) = Table::open(io(&mut good), 7) {
            check_layout(&t.list(), t.disk_sectors());
        }
    }
}

/// Host tools read the table as written (gdisk's `sgdisk`, when
/// installed: `apt-get install gdisk`, and util-linux's `fdisk`; the
/// `volume` scenarios check the image dom0 itself wrote with sgdisk too).
#[test]
fn sgdisk_reads_the_table() {
    let Ok(status) = std::process::Command::new("sgdisk")
        .arg("--version")
        .output()
    else {
        eprintln!("sgdisk not installed: skipped");
        return;
    };
    assert!(status.status.success());
    let mut disk = blank(16);
    let (mut table, _) = open(&mut disk);
    table.create(io(&mut disk), "data", 3 * MIB).unwrap();
    table.create(io(&mut disk), "logs", MIB).unwrap();
    let dir = std::env::temp_dir().join(format!("volumes-sgdisk-{}", std::process::id()));
    std::fs::write(&dir, &disk).unwrap();
    let out = std::process::Command::new("sgdisk")
        .args(["-v", "-p"])
        .arg(&dir)
        .output()
        .unwrap();
    let fdisk = std::process::Command::new("fdisk")
        .arg("-l")
        .arg(&dir)
        .output();
    std::fs::remove_file(&dir).unwrap();
    if let Ok(fdisk) = fdisk {
        let text = String::from_utf8_lossy(&fdisk.stdout);
        assert!(text.contains("Disklabel type: gpt"), "{text}");
        assert!(
            text.contains("p1  2048  8191    6144   3M unknown"),
            "{text}"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("No problems found"), "{text}");
    assert!(
        text.contains("   1            2048            8191   3.0 MiB     FFFF  data"),
        "{text}"
    );
    assert!(
        text.contains("   2            8192           10239   1024.0 KiB  FFFF  logs"),
        "{text}"
    );
}
