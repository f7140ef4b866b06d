//! The handover socket's messages: SOCK_SEQPACKET, one message per record, a descriptor riding
//! along with SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self as sock, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

/// A new unix SOCK_SEQPACKET socket (close-on-exec).
pub(super) fn seqpacket() -> nix::Result<OwnedFd> {
    sock::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
}

/// Send `msg`, with `fd` when given.
pub(super) fn send(conn: &OwnedFd, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> nix::Result<()> {
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<sock::ControlMessage<'_>> =
        raw.iter().map(|r| sock::ControlMessage::ScmRights(r)).collect();
    sock::sendmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &[IoSlice::new(msg)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// One message and the descriptor that came with it; an empty message is EOF.
#[allow(unsafe_code)] // adopts descriptors received with SCM_RIGHTS (see SAFETY below)
pub(super) fn recv(conn: &OwnedFd) -> nix::Result<(Vec<u8>, Option<OwnedFd>)> {
    let mut buf = [0u8; 512];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = sock::recvmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &mut iov,
        Some(cmsg.as_mut_slice()),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let sock::ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: SCM_RIGHTS just installed these descriptors in this process; we own them.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                // More than one per message is a protocol error; the extra ones are closed here.
                fd.get_or_insert(owned);
            }
        }
    }
    let n = msg.bytes;
    Ok((buf[..n].to_vec(), fd))
}
