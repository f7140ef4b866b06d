use super::*;

#[test]
fn finds_listening_sockets_and_hands_them_over() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Queued on the socket before the handover: the new owner must accept it.
    let mut early = std::net::TcpStream::connect(addr).unwrap();
    let found = listening_sockets();
    assert!(found.iter().any(|(a, _)| *a == addr), "{found:?}");
    let client_end = early.local_addr().unwrap();
    assert!(
        found.iter().all(|(a, _)| *a != client_end),
        "a connection is not a listener"
    );

    // A whole handover within one process: serve, receive, bind, and the handed-over socket
    // accepts what was and what is connected to the original's address.
    let dir = tempfile::tempdir().unwrap();
    let successor = Arc::new(Notify::new());
    serve(dir.path(), successor.clone()).unwrap();
    let pred = receive(dir.path()).unwrap();
    let taken = bind(addr, "test").unwrap();
    assert_eq!(taken.local_addr().unwrap(), addr);
    drop(listener);
    let mut late = std::net::TcpStream::connect(addr).unwrap();
    taken.set_nonblocking(false).unwrap();
    for (c, byte) in [(&mut early, b"e"), (&mut late, b"l")] {
        let (mut s, _) = taken.accept().unwrap();
        c.write_all(byte).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, byte);
    }
    pred.ready();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), successor.notified())
            .await
            .expect("the old side saw `ready`");
    });
}
