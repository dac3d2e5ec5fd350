//! Several ckptd nodes in this process, on loopback, and agents in cluster mode talking
//! to them: replication, the synchronize barrier, failover of a collocated checkpoint.

use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Error, Library, OpenFlags,
    ReadElement, TIME_END, Version,
};
use ckpt_tools::ckptd::{self, LocalCluster};

const SECOND: i64 = 1_000_000_000;

fn library(cluster: &LocalCluster, node: u32) -> Library {
    let config = Config {
        cluster: Some(cluster.socket(node)),
        ..Config::default()
    };
    Library::initialize_with(config, Version::B_02_02, Callbacks::default())
        .expect("initialize in cluster mode")
}

fn collocated() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: 4 * 4096,
        retention_duration: 10 * SECOND,
        max_sections: 4,
        max_section_size: 4096,
        max_section_id_size: 16,
    }
}

/// Retries `f` while it says TryAgain (the directory is still forming), for up to 20 s.
fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let start = Instant::now();
    loop {
        match f() {
            Err(Error::TryAgain | Error::Unavailable)
                if start.elapsed() < Duration::from_secs(20) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

fn read_local(ck: &Checkpoint, id: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut el = [ReadElement {
        section_id: id,
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    ck.read_local(&mut el).expect("local read");
    let n = el[0].read_size;
    buf.truncate(n);
    buf
}

#[test]
fn a_synchronized_write_is_on_the_standby_node_and_survives_the_active_nodes_death() {
    let cluster = LocalCluster::create("sync", &[1, 2], true, 600).expect("cluster files");
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let n2 = ckptd::spawn(cluster.config.clone(), 2).expect("node 2");

    let lib1 = library(&cluster, 1);
    let active = retry(|| {
        lib1.open(
            "safCkpt=cluster-test",
            Some(&collocated()),
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
            10 * SECOND,
        )
    })
    .expect("open on node 1");
    active.set_active_replica().expect("active on node 1");
    active
        .create_section(Some(b"counter"), TIME_END, b"0")
        .expect("create section");

    let lib2 = library(&cluster, 2);
    let standby = retry(|| {
        lib2.open(
            "safCkpt=cluster-test",
            None,
            OpenFlags::READ | OpenFlags::WRITE,
            10 * SECOND,
        )
    })
    .expect("open on node 2");

    for i in 1..=20u32 {
        active
            .overwrite(b"counter", i.to_string().as_bytes())
            .expect("overwrite");
    }
    active.synchronize(10 * SECOND).expect("synchronize");
    assert_eq!(read_local(&standby, b"counter"), b"20");

    // The active node dies (its daemon stops; the application with it).
    drop(active);
    drop(lib1);
    n1.stop();

    retry(|| standby.set_active_replica()).expect("standby takes over");
    let mut buf = [0u8; 16];
    let n = standby
        .read_into(b"counter", 0, &mut buf)
        .expect("read on the new active");
    assert_eq!(&buf[..n], b"20");
    standby
        .overwrite(b"counter", b"21")
        .expect("the new active takes writes");
    drop(standby);
    drop(lib2);
    n2.stop();
}
