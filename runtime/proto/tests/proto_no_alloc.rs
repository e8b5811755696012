//! Decoding must not allocate: a length read from the buffer can never turn
//! into an allocation, whatever the bytes claim.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use weir_proto::{BatchBuilder, BatchView, NewRecord};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn decode_everything(bytes: &[u8]) {
    if let Ok(view) = BatchView::parse(bytes) {
        for record in view.records().flatten() {
            std::hint::black_box(record.headers().count());
        }
    }
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_allocates_nothing(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(allocations_during(|| decode_everything(&bytes)), 0);
    }
}

#[test]
fn decoding_a_valid_batch_allocates_nothing() {
    let mut b = BatchBuilder::new();
    for i in 0..100u8 {
        b.push(&NewRecord {
            key: Some(&[i]),
            headers: &[("a", b"b")],
            payload: &[i; 64],
            ..NewRecord::default()
        })
        .expect("push");
    }
    let bytes = b.finish().expect("finish");
    assert_eq!(allocations_during(|| decode_everything(&bytes)), 0);
}
