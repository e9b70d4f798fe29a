//! A bump allocator for the shim binary.
//!
//! The shim lives for well under a millisecond and ends in `exec`, which discards its whole
//! address space. musl's allocator spends eight `mmap`/`munmap`/`brk` calls on the few
//! kilobytes a decision needs, and on a virtual machine every system call is several
//! microseconds on every transcoder start. This allocator hands out memory from a 2 MiB
//! zero-initialised static buffer (`.bss`: no file size, pages touched on demand) and never
//! frees it; anything that does not fit goes to the system allocator, so a 100,000-token
//! command line or a large probe read still works. Only the binary installs it (`main.rs`);
//! the library and the daemon use the normal allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

const SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct Buffer(UnsafeCell<[u8; SIZE]>);

// SAFETY: disjoint ranges of the buffer are handed out through an atomic cursor; the buffer
// itself is never accessed as a whole.
unsafe impl Sync for Buffer {}

static BUFFER: Buffer = Buffer(UnsafeCell::new([0; SIZE]));
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The bump allocator (see the module docs).
pub struct Arena;

fn base() -> usize {
    BUFFER.0.get() as usize
}

fn owns(ptr: *mut u8) -> bool {
    let p = ptr as usize;
    p >= base() && p < base() + SIZE
}

// SAFETY: every pointer returned is either a fresh, suitably aligned, in-bounds range of the
// static buffer that no other allocation overlaps (the cursor only moves forward), or comes
// from `System`, to which it is returned.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut cur = NEXT.load(Ordering::Relaxed);
        loop {
            let start = (base() + cur).next_multiple_of(layout.align()) - base();
            let end = match start.checked_add(layout.size()) {
                Some(e) if e <= SIZE => e,
                // SAFETY: forwarding a valid layout to the system allocator.
                _ => return unsafe { System.alloc(layout) },
            };
            match NEXT.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (base() + start) as *mut u8,
                Err(now) => cur = now,
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !owns(ptr) {
            // SAFETY: the pointer came from `System.alloc` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
        // Arena memory is reclaimed by exec or exit.
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if owns(ptr) {
            // Grow or shrink the most recent allocation in place.
            let start = ptr as usize - base();
            let end = start + layout.size();
            if let Some(new_end) = start.checked_add(new_size).filter(|e| *e <= SIZE) {
                if NEXT
                    .compare_exchange(end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return ptr;
                }
            }
        } else {
            // SAFETY: the pointer came from `System.alloc` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (GlobalAlloc contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both ranges are valid for the smaller of the two sizes and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_aligned_grows_in_place_and_falls_back() {
        let a = Arena;
        unsafe {
            let l = Layout::from_size_align(10, 8).unwrap();
            let p = a.alloc(l);
            assert!(owns(p) && (p as usize).is_multiple_of(8));
            let q = a.realloc(p, l, 100);
            assert_eq!(p, q, "the last allocation grows in place");
            let big = Layout::from_size_align(SIZE + 1, 16).unwrap();
            let b = a.alloc(big);
            assert!(!b.is_null() && !owns(b));
            a.dealloc(b, big);
            let r = a.alloc(Layout::from_size_align(3, 1).unwrap());
            let r2 = a.realloc(q, Layout::from_size_align(100, 8).unwrap(), 200);
            assert_ne!(q, r2, "not the last allocation: moved");
            assert!(owns(r) && owns(r2));
        }
    }
}
