//! Attach, detach and destroy against the real store.

use super::*;

fn extent(name: &str) -> VolumeExtent {
    VolumeExtent {
        name: name.into(),
        first_lba: 2048,
        sectors: 4096,
    }
}

fn read(store: &StoreService, path: &str) -> Option<String> {
    store
        .read(path)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn attach_publishes_the_device_and_waits_for_the_frontend() {
    let (mut store, mut blk) = (StoreService::new(), BlockBackends::new());
    assert_eq!(
        blk.attach(&mut store, 3, "xvda", extent("data"), false),
        Ok(51712)
    );
    let back = "/local/domain/0/backend/vbd/3/51712";
    assert_eq!(
        read(&store, &alloc::format!("{back}/state")).as_deref(),
        Some("2")
    );
    assert_eq!(
        read(&store, &alloc::format!("{back}/feature-flush-cache")).as_deref(),
        Some("1")
    );
    assert_eq!(
        read(&store, &alloc::format!("{back}/mode")).as_deref(),
        Some("w")
    );
    assert_eq!(
        read(&store, "/local/domain/3/device/vbd/51712/backend").as_deref(),
        Some(back)
    );
    let list = blk.list();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].domid, list[0].devid, list[0].state), (3, 51712, 2));
    assert!(blk.is_attached("data"));
    assert_eq!(
        blk.devices[0].frontend_state(&store),
        XenbusState::Initialising
    );
}

#[test]
fn a_volume_is_writable_in_one_place_only() {
    let (mut store, mut blk) = (StoreService::new(), BlockBackends::new());
    blk.attach(&mut store, 3, "xvda", extent("data"), true)
        .unwrap();
    // Read-only twice is fine; writable next to a reader is not.
    assert_eq!(
        blk.attach(&mut store, 4, "xvda", extent("data"), true),
        Ok(51712)
    );
    assert_eq!(
        blk.attach(&mut store, 5, "xvda", extent("data"), false),
        Err(BlockError::VolumeInUse {
            volume: "data".into(),
            domid: 3
        })
    );
    blk.attach(&mut store, 5, "xvda", extent("other"), false)
        .unwrap();
    assert_eq!(
        blk.attach(&mut store, 6, "xvdb", extent("other"), true),
        Err(BlockError::VolumeInUse {
            volume: "other".into(),
            domid: 5
        })
    );
    assert_eq!(
        blk.attach(&mut store, 5, "xvda", extent("third"), false),
        Err(BlockError::VdevInUse {
            domid: 5,
            vdev: "xvda".into()
        })
    );
    assert!(matches!(
        blk.attach(&mut store, 5, "vda", extent("third"), false),
        Err(BlockError::BadVdev(..))
    ));
}

#[test]
fn devices_are_bounded() {
    let (mut store, mut blk) = (StoreService::new(), BlockBackends::new());
    for i in 0..MAX_DEVICES {
        let name = alloc::format!("v{i}");
        let domid = DomId::try_from(1 + i / 8).unwrap();
        let vdev = alloc::format!("xvd{}", ["a", "b", "c", "d", "e", "f", "g", "h"][i % 8]);
        blk.attach(&mut store, domid, &vdev, extent(&name), false)
            .unwrap();
    }
    assert_eq!(
        blk.attach(&mut store, 9, "xvda", extent("last"), false),
        Err(BlockError::TooMany)
    );
}

#[test]
fn detach_and_destroy_remove_the_nodes() {
    let (mut store, mut blk) = (StoreService::new(), BlockBackends::new());
    blk.attach(&mut store, 3, "xvda", extent("a"), false)
        .unwrap();
    blk.attach(&mut store, 3, "xvdb", extent("b"), false)
        .unwrap();
    blk.attach(&mut store, 4, "xvda", extent("c"), false)
        .unwrap();
    assert_eq!(
        blk.detach(&mut store, 4, "xvdb"),
        Err(BlockError::NotAttached {
            domid: 4,
            vdev: "xvdb".into()
        })
    );
    blk.detach(&mut store, 4, "xvda").unwrap();
    assert!(store.read("/local/domain/0/backend/vbd/4/51712").is_none());
    assert!(store.read("/local/domain/4/device/vbd/51712").is_none());
    assert!(!blk.is_attached("c"));
    blk.domain_destroyed(&mut store, 3);
    assert!(blk.list().is_empty());
    assert!(store.read("/local/domain/0/backend/vbd/3").is_none());
    // The volume is free again.
    assert_eq!(
        blk.attach(&mut store, 5, "xvda", extent("a"), false),
        Ok(51712)
    );
}
