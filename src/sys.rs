//! The file-descriptor calls no safe API covers, each with its SAFETY reasoning
//! once: taking ownership of a descriptor inherited across exec (systemd socket
//! activation, a binary upgrade: `listener::inherit`), and starting a successor
//! with chosen descriptors kept open across its exec (`handover`). Socket
//! options go through socket2's safe `SockRef` instead. Also the allocator: mimalloc
//! as the binary's global allocator ([`Allocator`]), and the kernel's coarse
//! monotonic clock ([`monotonic_coarse`]). Imports nothing of porter.

use std::alloc::{GlobalAlloc, Layout};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;

use libmimalloc_sys as mi;

/// Held across the check and the take, so two threads cannot both take one number.
static TAKING: Mutex<()> = Mutex::new(());

/// Takes ownership of descriptor `fd`, which this process inherited across its exec.
///
/// Refused unless `fd` is above stdio, open, and not close-on-exec. Everything
/// this process opens itself (std, tokio, socket2) is close-on-exec from the
/// start, so an open descriptor without the flag crossed the exec and nothing
/// here owns it yet. Taking it sets the flag: the same number cannot be taken
/// twice, and the next exec passes it only when asked ([`spawn_keeping`]).
pub(crate) fn take_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    let refuse = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("descriptor {fd} {why}")));
    if fd < 3 {
        return refuse("is standard input, output or error");
    }
    let _taking = TAKING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: F_GETFD only reads the flags of a descriptor number; a closed one fails (EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return refuse("is close-on-exec: opened by this process, or taken already");
    }
    // SAFETY: the descriptor is open and not close-on-exec (checked above, under
    // TAKING), so it crossed the exec and no owner in this process holds it; the
    // flag set next makes this the only take.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD sets the flags of the descriptor just taken, which `owned` keeps open.
    if unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// Starts `command` with the descriptors `keep` open across its exec (porter's
/// others are close-on-exec and stay behind). The borrows keep them open until
/// the child has exec'd: `spawn` returns only after that.
pub(crate) fn spawn_keeping(mut command: Command, keep: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let keep: Vec<RawFd> = keep.iter().map(|fd| fd.as_raw_fd()).collect();
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl,
    // which is async-signal-safe, on descriptors this process holds open (borrowed
    // for this call). It allocates nothing: `keep` was built before the fork.
    unsafe {
        command.pre_exec(move || {
            for &fd in &keep {
                // Clear close-on-exec: these descriptors, and no others, cross the exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn()
}

/// `CLOCK_MONOTONIC_COARSE`: the monotonic clock (the one `Instant` reads) as of the
/// kernel's last timer tick. A read is a load from the vDSO's page, no TSC: 6 ns here
/// against `Instant::now()`'s 27.
pub(crate) fn monotonic_coarse() -> std::time::Duration {
    coarse_clock(libc::clock_gettime)
}

/// How old [`monotonic_coarse`] can be: the kernel's tick (4 ms at 250 Hz).
pub(crate) fn monotonic_coarse_resolution() -> std::time::Duration {
    coarse_clock(libc::clock_getres)
}

fn coarse_clock(
    call: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
) -> std::time::Duration {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime and clock_getres write one timespec through the pointer, to a
    // local that outlives the call; this clock exists on every Linux since 2.6.32.
    unsafe { call(libc::CLOCK_MONOTONIC_COARSE, &mut time) };
    std::time::Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// All the memory mimalloc holds freed goes back to the kernel now (its purge delay
/// waived), for when porter is idle once a burst is over (`porter::start`). Without
/// it that memory stays until a later allocation, which an idle porter may not make:
/// after a burst of requests whose connections then stayed open, 1.91–2.11 KiB per
/// idle plain connection in the bench, 1.75–1.81 with it.
pub(crate) fn release_all_freed_memory() {
    // SAFETY: mi_collect takes no pointer; it walks the calling thread's own heap and
    // the process's arenas.
    unsafe { mi::mi_collect(true) };
}

/// The global allocator (the binary's): mimalloc, asked through `mi_malloc` for the
/// alignment every mimalloc block has (a machine word), and through `mi_malloc_aligned`
/// only for more. The mimalloc crate's allocator asks `mi_malloc_aligned` for every
/// block, a slower path (in mimalloc v3 it over-allocated each block over 1 KiB whose
/// size is not a power of two: 3.6 of a proxied request's 10 allocations).
///
/// mimalloc v2, its stable line (Cargo.toml): under keep-alive load v3 handed a page
/// back to its arena and took it again about once every 3.5 requests (pages it counts
/// as abandoned and reclaimed), 13% of porter's user time; v2 does neither, and gives
/// freed memory back after its own 10 ms purge delay without the page faults v3 took
/// at that delay (9 minor faults per 100,000 requests against v3's 28,700).
pub struct Allocator;

/// Every mimalloc block is aligned to a word at least: block sizes are whole words.
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: each method hands the layout's size (and its alignment, when over a word) to the
// mimalloc function for the job; mimalloc returns null when it cannot allocate, blocks
// aligned to a word at least (to the alignment asked with the `_aligned` calls), and takes
// back with `mi_free` any block it made, as `GlobalAlloc` requires.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = if layout.align() <= WORD {
            // SAFETY: mi_malloc has no precondition.
            unsafe { mi::mi_malloc(layout.size()) }
        } else {
            // SAFETY: a Layout's alignment is a power of two, as mi_malloc_aligned needs.
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) }
        };
        block.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = if layout.align() <= WORD {
            // SAFETY: mi_zalloc has no precondition.
            unsafe { mi::mi_zalloc(layout.size()) }
        } else {
            // SAFETY: a Layout's alignment is a power of two, as mi_zalloc_aligned needs.
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) }
        };
        block.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc's caller passes a block this allocator made, so mimalloc's.
        unsafe { mi::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let block = if layout.align() <= WORD {
            // SAFETY: `ptr` is a block of mimalloc's (see dealloc); the new one keeps the
            // word alignment every block has.
            unsafe { mi::mi_realloc(ptr.cast(), new_size) }
        } else {
            // SAFETY: as above, with the block's alignment kept.
            unsafe { mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()) }
        };
        block.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn what_this_process_opened_itself_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let error = take_inherited(listener.as_raw_fd()).unwrap_err();
        assert!(error.to_string().contains("close-on-exec"), "{error}");
        for stdio in 0..3 {
            assert!(take_inherited(stdio).is_err());
        }
        // Still ours: the refused take closed nothing.
        assert!(listener.local_addr().is_ok());
    }

    /// A descriptor that crossed an exec is taken once: the child, started with
    /// [`spawn_keeping`], finds it open and not close-on-exec, and writes through it.
    #[test]
    fn a_descriptor_kept_across_exec_arrives_open_and_not_close_on_exec() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let fd = theirs.as_raw_fd();
        let mut command = Command::new("sh");
        // sh can write to the number only if the descriptor is open in it.
        command.arg("-c").arg(format!("echo crossed >&{fd}"));
        let mut child = spawn_keeping(command, &[theirs.as_fd()]).unwrap();
        drop(theirs);
        assert!(child.wait().unwrap().success());
        let mut got = String::new();
        ours.read_to_string(&mut got).unwrap();
        assert_eq!(got, "crossed\n");
    }

    /// The take itself, in this process: a descriptor left as an exec leaves it
    /// (close-on-exec cleared, no owner) is owned once, and close-on-exec afterwards.
    #[test]
    fn an_inherited_descriptor_is_taken_once() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        socket2::SockRef::from(&theirs).set_cloexec(false).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(theirs);
        let taken = take_inherited(fd).unwrap();
        let again = take_inherited(fd).unwrap_err();
        assert!(again.to_string().contains("taken already"), "{again}");
        let mut theirs = UnixStream::from(taken);
        theirs.write_all(b"taken").unwrap();
        // read_exact, not to the end: a child another test forks meanwhile may hold a copy.
        let mut got = [0; 5];
        ours.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"taken");
    }

    /// Every size and alignment a request's allocations use, and the larger ones
    /// `mi_malloc_aligned` serves: aligned as asked, zeroed when asked, contents kept
    /// across a realloc (the global allocator is the binary's, so this calls it directly).
    #[test]
    fn the_allocator_aligns_zeroes_and_keeps_contents() {
        use std::alloc::{GlobalAlloc, Layout};
        let allocator = super::Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 24, 100, 1000, 1025, 5000, 9200, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; the block is freed below with its layout.
                let block = unsafe { allocator.alloc(layout) };
                assert!(!block.is_null() && (block as usize).is_multiple_of(align), "size {size}, align {align}");
                // SAFETY: `block` holds `size` bytes.
                unsafe { block.write_bytes(0xa5, size) };
                // SAFETY: `block` came from this allocator with `layout`; the new size is non-zero.
                let grown = unsafe { allocator.realloc(block, layout, size * 3) };
                assert!(
                    !grown.is_null() && (grown as usize).is_multiple_of(align),
                    "realloc: size {size}, align {align}"
                );
                // SAFETY: the first `size` bytes were kept by realloc.
                let kept = unsafe { std::slice::from_raw_parts(grown, size) };
                assert!(kept.iter().all(|&b| b == 0xa5), "realloc kept the contents: size {size}, align {align}");
                // SAFETY: `grown` came from this allocator; its layout is `layout` with the new size.
                unsafe { allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap()) };
                // SAFETY: as for `alloc`.
                let zeroed = unsafe { allocator.alloc_zeroed(layout) };
                assert!(!zeroed.is_null() && (zeroed as usize).is_multiple_of(align));
                // SAFETY: `zeroed` holds `size` bytes.
                assert!(unsafe { std::slice::from_raw_parts(zeroed, size) }.iter().all(|&b| b == 0));
                // SAFETY: `zeroed` came from this allocator with `layout`.
                unsafe { allocator.dealloc(zeroed, layout) };
            }
        }
    }
}
