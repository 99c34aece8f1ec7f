use super::*;
use abi::xen::netif::NETIF_RSP_ERROR;
use abi::xen::ring::BackRing;
use core::sync::atomic::AtomicU8;

struct Pages {
    tx: Vec<Box<PageBytes>>,
    rx: Vec<Box<PageBytes>>,
}

fn page() -> Box<PageBytes> {
    Box::new([const { AtomicU8::new(0) }; 4096])
}

impl Pages {
    fn new() -> Self {
        Pages {
            tx: (0..TX_BUFS).map(|_| page()).collect(),
            rx: (0..RX_BUFS).map(|_| page()).collect(),
        }
    }
}

impl Buffers for &Pages {
    fn tx_page(&self, id: usize) -> &PageBytes {
        &self.tx[id]
    }
    fn tx_gref(&self, id: usize) -> GrantRef {
        100 + u32::try_from(id).unwrap()
    }
    fn rx_page(&self, id: usize) -> &PageBytes {
        &self.rx[id]
    }
    fn rx_gref(&self, id: usize) -> GrantRef {
        200 + u32::try_from(id).unwrap()
    }
}

fn ring_page() -> Vec<AtomicU32> {
    (0..1024).map(|_| AtomicU32::new(0)).collect()
}

#[test]
fn a_frame_goes_out_and_its_buffer_comes_back() {
    let pages = Pages::new();
    let (tx, rx) = (ring_page(), ring_page());
    let mut front = Rings::init(&tx, &rx, &pages).unwrap();
    let mut back: BackRing<NetifTxRequest, NetifTxResponse> = BackRing::init(&tx).unwrap();
    for i in (0u8..).take(TX_BUFS) {
        assert!(front.can_send());
        front.send(&[i; 60]).unwrap();
    }
    assert_eq!(front.send(&[0; 60]), Err(NetfrontError::TxFull));
    let req = back.take_request().unwrap().unwrap();
    assert_eq!((req.gref, req.offset, req.size, req.flags), (100, 0, 60, 0));
    let mut data = [0u8; 60];
    assert!(read_bytes(
        &pages.tx[(req.gref - 100) as usize],
        0,
        &mut data
    ));
    assert_eq!(data, [0u8; 60]);
    back.queue_response(&NetifTxResponse {
        id: req.id,
        status: NETIF_RSP_ERROR,
    })
    .unwrap();
    back.push_responses();
    front.reap_tx().unwrap();
    assert_eq!(front.stats().tx_errors, 1);
    assert!(front.can_send());
    // A second answer for the same id is refused.
    back.take_request().unwrap().unwrap();
    back.queue_response(&NetifTxResponse {
        id: req.id,
        status: 0,
    })
    .unwrap();
    back.push_responses();
    assert_eq!(front.reap_tx(), Err(NetfrontError::BadId(req.id)));
}

#[test]
fn frames_too_large_or_empty_are_refused() {
    let pages = Pages::new();
    let (tx, rx) = (ring_page(), ring_page());
    let mut front = Rings::init(&tx, &rx, &pages).unwrap();
    assert_eq!(front.send(&[]), Err(NetfrontError::BadFrame(0)));
    assert_eq!(
        front.send(&[0; MTU_FRAME + 1]),
        Err(NetfrontError::BadFrame(MTU_FRAME + 1))
    );
}

#[test]
fn rx_buffers_are_posted_filled_read_and_posted_again() {
    let pages = Pages::new();
    let (tx, rx) = (ring_page(), ring_page());
    let mut front = Rings::init(&tx, &rx, &pages).unwrap();
    let mut back: BackRing<NetifRxRequest, NetifRxResponse> = BackRing::init(&rx).unwrap();
    front.post_rx();
    assert_eq!(
        back.unconsumed_requests(),
        Ok(u32::try_from(RX_BUFS).unwrap())
    );
    let mut buf = [0u8; 2048];
    assert_eq!(front.recv(&mut buf), Ok(None));
    // The backend fills two buffers: one frame, one error.
    let req = back.take_request().unwrap().unwrap();
    assert!(write_bytes(
        &pages.rx[(req.gref - 200) as usize],
        0,
        b"hello frame"
    ));
    back.queue_response(&NetifRxResponse {
        id: req.id,
        offset: 0,
        flags: 0,
        status: 11,
    })
    .unwrap();
    let req = back.take_request().unwrap().unwrap();
    back.queue_response(&NetifRxResponse {
        id: req.id,
        offset: 0,
        flags: 0,
        status: NETIF_RSP_ERROR,
    })
    .unwrap();
    back.push_responses();
    assert!(front.rx_pending());
    assert_eq!(front.recv(&mut buf), Ok(Some(11)));
    assert_eq!(&buf[..11], b"hello frame");
    assert_eq!(front.recv(&mut buf), Ok(None));
    assert_eq!(front.stats().rx_errors, 1);
    // Both buffers go back to the backend.
    front.post_rx();
    assert_eq!(
        back.unconsumed_requests(),
        Ok(u32::try_from(RX_BUFS).unwrap())
    );
}

#[test]
fn a_response_with_an_offset_past_the_page_is_an_error_not_a_read() {
    let pages = Pages::new();
    let (tx, rx) = (ring_page(), ring_page());
    let mut front = Rings::init(&tx, &rx, &pages).unwrap();
    let mut back: BackRing<NetifRxRequest, NetifRxResponse> = BackRing::init(&rx).unwrap();
    front.post_rx();
    let req = back.take_request().unwrap().unwrap();
    back.queue_response(&NetifRxResponse {
        id: req.id,
        offset: 4000,
        flags: 0,
        status: 200,
    })
    .unwrap();
    back.push_responses();
    let mut buf = [0u8; 2048];
    assert_eq!(front.recv(&mut buf), Ok(None));
    assert_eq!(front.stats().rx_errors, 1);
}

#[test]
fn macs_parse_as_libxl_writes_them() {
    assert_eq!(
        parse_mac("00:16:3e:0A:bb:01"),
        Some([0, 0x16, 0x3e, 0x0a, 0xbb, 1])
    );
    assert_eq!(parse_mac("00:16:3e:0a:bb"), None);
    assert_eq!(parse_mac("00:16:3e:0a:bb:01:02"), None);
    assert_eq!(parse_mac("0:16:3e:0a:bb:01"), None);
}
