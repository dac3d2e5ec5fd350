//! Several ckptd nodes in this process, on loopback, and agents in cluster mode talking
//! to them: replication, the synchronize barrier, failover of a collocated checkpoint.
//!
//! Every scenario runs twice: with the nodes' replicas as files in their shm directories
//! (`files::…`), and as sealed memfds passed to agents by descriptor (`sealed::…`, the
//! nodes' `sealed = true`), where a restarted ckptd gets back only the replicas its agents
//! hold and treats the others like a wiped node's.

use std::time::{Duration, Instant};

use ckpt_agent::{
    Checkpoint, CreationAttributes, CreationFlags, Error, Library, OpenFlags, TIME_END,
};
use ckpt_tools::ckptd::{self, LocalCluster};

mod support;
use support::{Objects, holds, library, local_cluster, read_local, replica_on, retry};

const SECOND: i64 = 1_000_000_000;

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

fn a_synchronized_write_is_on_the_standby_node_and_survives_the_active_nodes_death(
    objects: Objects,
) {
    let cluster = local_cluster("sync", &[1, 2], &[1, 2], true, 600, objects);
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

fn replicated(flags: CreationFlags) -> CreationAttributes {
    CreationAttributes {
        creation_flags: flags,
        checkpoint_size: 16 * 4096,
        retention_duration: 10 * SECOND,
        max_sections: 16,
        max_section_size: 4096,
        max_section_id_size: 16,
    }
}

fn read_all(ck: &Checkpoint, id: &[u8]) -> Vec<u8> {
    ck.read_vec(id, 0).expect("read")
}

/// Three nodes, directors 1 and 2: a non-collocated checkpoint created on node 1 has
/// replicas on 1 and 2 and none on node 3.
struct Three {
    n: Vec<ckptd::NodeHandle>,
    cluster: LocalCluster,
}

fn three(tag: &str, objects: Objects) -> Three {
    let cluster = local_cluster(tag, &[1, 2, 3], &[1, 2], false, 600, objects);
    let n = [1, 2, 3]
        .iter()
        .map(|&i| ckptd::spawn(cluster.config.clone(), i).expect("node"))
        .collect();
    Three { n, cluster }
}

fn open_on(lib: &Library, name: &str, attrs: Option<&CreationAttributes>) -> Checkpoint {
    let flags = if attrs.is_some() {
        OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE
    } else {
        OpenFlags::READ | OpenFlags::WRITE
    };
    retry(|| lib.open(name, attrs, flags, 10 * SECOND)).expect("open")
}

fn a_node_without_a_replica_writes_and_reads_through_the_primarys_node(objects: Objects) {
    let t = three("remote", objects);
    let lib1 = library(&t.cluster, 1);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
    let on1 = open_on(&lib1, "safCkpt=remote", Some(&attrs));
    let on3 = open_on(&lib3, "safCkpt=remote", None);
    assert!(
        !holds(&t.cluster, 3, on1.instance()),
        "node 3 is not a director and did not create it: no replica there"
    );

    // Section create, overwrite and a multi-element write from node 3, ordered by node 1.
    let id = retry(|| on3.create_section(Some(b"s"), TIME_END, b"from three")).expect("create");
    assert_eq!(id, b"s");
    assert_eq!(read_all(&on1, b"s"), b"from three");
    on3.overwrite(b"s", b"0123456789").expect("overwrite");
    on3.write(&[ckpt_agent::WriteElement {
        section_id: b"s",
        offset: 4,
        data: b"xy",
    }])
    .expect("write");
    assert_eq!(read_all(&on1, b"s"), b"0123xy6789");

    // Reads on node 3 come from the active replica: the bytes, an element read, status,
    // iteration.
    assert_eq!(read_all(&on3, b"s"), b"0123xy6789");
    let mut buf = [0u8; 4];
    assert_eq!(on3.read_into(b"s", 2, &mut buf).expect("read_into"), 4);
    assert_eq!(&buf, b"23xy");
    let st = on3.status().expect("status");
    assert_eq!(st.number_of_sections, 1);
    assert_eq!(st.memory_used, 10);
    let mut it = on3
        .sections(ckpt_agent::SectionsChosen::Any)
        .expect("iteration");
    assert_eq!(it.next_section().expect("one").id, b"s");
    assert!(matches!(it.next_section(), Err(Error::NoSections)));

    // Errors come back as the primary's engine gives them.
    assert!(matches!(on3.overwrite(b"nope", b"x"), Err(Error::NotExist)));
    assert!(matches!(
        on3.create_section(Some(b"s"), TIME_END, b""),
        Err(Error::Exist)
    ));
    let bad = on3.write(&[
        ckpt_agent::WriteElement {
            section_id: b"s",
            offset: 0,
            data: b"ok",
        },
        ckpt_agent::WriteElement {
            section_id: b"absent",
            offset: 0,
            data: b"no",
        },
    ]);
    let e = bad.expect_err("the second element names no section");
    assert_eq!((e.index, e.error), (1, Error::NotExist));
    assert_eq!(read_all(&on1, b"s"), b"0123xy6789", "all or nothing");

    // Synchronize from node 3: node 1's daemon waits for node 2's ack.
    on3.synchronize(10 * SECOND).expect("synchronize");
    on3.delete_section(b"s").expect("delete");
    assert!(matches!(on1.read_vec(b"s", 0), Err(Error::NotExist)));
}

fn writes_on_a_replica_that_is_not_the_primary_go_to_the_primary_and_reads_see_them(
    objects: Objects,
) {
    let t = three("offprimary", objects);
    let lib1 = library(&t.cluster, 1);
    let lib2 = library(&t.cluster, 2);
    let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
    let on1 = open_on(&lib1, "safCkpt=off", Some(&attrs));
    let on2 = open_on(&lib2, "safCkpt=off", None);
    retry(|| on2.create_section(Some(b"k"), TIME_END, b"v1")).expect("create from node 2");
    // The active replica (node 1) has it at once; node 2 reads the active replica.
    assert_eq!(read_all(&on1, b"k"), b"v1");
    assert_eq!(read_all(&on2, b"k"), b"v1");
    on2.overwrite(b"k", b"v2").expect("overwrite from node 2");
    on2.synchronize(10 * SECOND)
        .expect("synchronize from node 2");
    // After the barrier node 2's own replica has it too (the hot-standby read).
    assert_eq!(read_local(&on2, b"k"), b"v2");
}

fn an_all_replicas_write_returns_only_once_every_replica_has_it(objects: Objects) {
    let t = three("allrep", objects);
    let lib1 = library(&t.cluster, 1);
    let lib2 = library(&t.cluster, 2);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(CreationFlags::WR_ALL_REPLICAS);
    let on1 = open_on(&lib1, "safCkpt=all", Some(&attrs));
    let on2 = open_on(&lib2, "safCkpt=all", None);
    let on3 = open_on(&lib3, "safCkpt=all", None);
    retry(|| on1.create_section(Some(b"c"), TIME_END, b"0")).expect("create");
    for i in 1..=50u32 {
        let v = i.to_string();
        let writer = if i % 2 == 0 { &on1 } else { &on3 };
        writer.overwrite(b"c", v.as_bytes()).expect("overwrite");
        // No synchronize: the write returned, so both replicas have it.
        assert_eq!(
            read_local(&on2, b"c"),
            v.as_bytes(),
            "node 2 after write {i}"
        );
        assert_eq!(read_all(&on1, b"c"), v.as_bytes(), "node 1 after write {i}");
    }
    // Synchronize is not for ALL_REPLICAS checkpoints.
    assert!(matches!(on1.synchronize(SECOND), Err(Error::BadOperation)));
    // Engine errors come back unchanged and nothing is published.
    assert!(matches!(
        on1.overwrite(b"missing", b"x"),
        Err(Error::NotExist)
    ));
    let id = on3
        .create_section(None, TIME_END, b"generated")
        .expect("generated id");
    assert_eq!(read_local(&on2, &id), b"generated");
    assert_eq!(read_all(&on1, &id), b"generated");
}

fn active_replica_set_while_the_old_active_lives_first_catches_the_new_one_up(objects: Objects) {
    let cluster = local_cluster("catchup", &[1, 2], &[1, 2], true, 600, objects);
    let _n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let _n2 = ckptd::spawn(cluster.config.clone(), 2).expect("node 2");
    let lib1 = library(&cluster, 1);
    let lib2 = library(&cluster, 2);
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: 256 * 65536,
        retention_duration: 10 * SECOND,
        max_sections: 256,
        max_section_size: 65536,
        max_section_id_size: 16,
    };
    let old = open_on(&lib1, "safCkpt=catchup", Some(&attrs));
    old.set_active_replica().expect("active on node 1");
    let new = open_on(&lib2, "safCkpt=catchup", None);
    // A backlog node 2 cannot have yet: 12 MiB written without a synchronize.
    let chunk = vec![7u8; 65536];
    for i in 0..192u32 {
        let id = format!("s{i}");
        old.create_section(Some(id.as_bytes()), TIME_END, &chunk)
            .expect("create");
    }
    old.overwrite(b"s0", b"last write before the switch")
        .expect("overwrite");
    retry(|| new.set_active_replica()).expect("node 2 becomes active");
    assert_eq!(
        read_all(&new, b"s0"),
        b"last write before the switch",
        "the new active has what the old one had"
    );
    assert_eq!(new.status().expect("status").number_of_sections, 192);
    // The old active's node now writes through the new one.
    old.overwrite(b"s1", b"after").expect("write via node 2");
    assert_eq!(read_all(&new, b"s1"), b"after");
}

fn a_restarted_ckptd_keeps_its_agents_handles_and_opens(objects: Objects) {
    let mut t = three("restart", objects);
    let lib3 = library(&t.cluster, 3);
    let lib2 = library(&t.cluster, 2);
    let attrs = CreationAttributes {
        retention_duration: 0,
        ..collocated()
    };
    let active = open_on(&lib3, "safCkpt=restart", Some(&attrs));
    active.set_active_replica().expect("active on node 3");
    let standby = open_on(&lib2, "safCkpt=restart", None);
    active
        .create_section(Some(b"c"), TIME_END, b"before")
        .expect("create");
    active.synchronize(10 * SECOND).expect("synchronize");
    let instance = active.instance();

    // Node 3's daemon restarts; its agent keeps its handle.
    t.n.pop().expect("node 3").stop();
    let _n3 = ckptd::spawn(t.cluster.config.clone(), 3).expect("node 3 again");
    retry(|| active.overwrite(b"c", b"after the restart")).expect("overwrite");
    retry(|| active.synchronize(10 * SECOND)).expect("synchronize after the restart");
    assert_eq!(read_local(&standby, b"c"), b"after the restart");
    // The restarted daemon holds the very replica its agent kept writing to (mapped
    // again from the file, or handed back by the agent when sealed).
    let on3 = replica_on(&t.cluster, 3, instance).expect("node 3's replica");
    assert_eq!(
        on3.read_to_vec(b"c").expect("read node 3's replica"),
        b"after the restart"
    );
    drop(on3);

    // The cluster still counts node 3's open across the restart: an unlinked checkpoint
    // with retention 0 lives on until that open closes, then goes with its replica.
    lib3.unlink("safCkpt=restart").expect("unlink");
    drop(standby);
    drop(lib2);
    std::thread::sleep(Duration::from_millis(200));
    assert!(holds(&t.cluster, 3, instance), "still open on node 3");
    drop(active);
    let start = Instant::now();
    while holds(&t.cluster, 3, instance) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!holds(&t.cluster, 3, instance), "the last close deleted it");
    drop(lib3);
}

fn a_non_collocated_checkpoint_gets_a_new_primary_when_its_primarys_node_dies(objects: Objects) {
    let mut t = three("promote", objects);
    let lib1 = library(&t.cluster, 1);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
    // Opened on node 3 (not a director): node 3 is the primary, 1 and 2 hold replicas.
    let on3 = open_on(&lib3, "safCkpt=promote", Some(&attrs));
    let on1 = open_on(&lib1, "safCkpt=promote", None);
    on3.create_section(Some(b"c"), TIME_END, b"synchronized")
        .expect("create on the primary");
    on3.synchronize(10 * SECOND).expect("synchronize");
    drop(on3);
    std::mem::forget(lib3); // its node dies under it
    t.n.pop().expect("node 3").stop();

    // The directory promotes a surviving replica (new term); node 1 reads the
    // synchronized value from it and writes through it.
    assert_eq!(
        retry(|| on1.read_vec(b"c", 0)).expect("read after the promotion"),
        b"synchronized"
    );
    retry(|| on1.overwrite(b"c", b"after")).expect("write after the promotion");
    on1.synchronize(10 * SECOND)
        .expect("synchronize with the surviving replicas");
    assert_eq!(read_local(&on1, b"c"), b"after");
}

fn a_node_without_a_replica_writes_through_the_new_primary_after_a_promotion(objects: Objects) {
    let mut t = three("farpromo", objects);
    let lib1 = library(&t.cluster, 1);
    let lib2 = library(&t.cluster, 2);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
    // Created on node 1: node 1 is the primary, node 2 (a director) holds a replica, and
    // node 3 only has it open.
    let on1 = open_on(&lib1, "safCkpt=farpromo", Some(&attrs));
    let on3 = open_on(&lib3, "safCkpt=farpromo", None);
    assert!(!holds(&t.cluster, 3, on1.instance()));
    retry(|| on3.create_section(Some(b"c"), TIME_END, b"before")).expect("create from node 3");
    on3.synchronize(10 * SECOND).expect("synchronize");
    drop(on1);
    std::mem::forget(lib1); // its node dies under it
    t.n.remove(0).stop();

    // Node 3's daemon learns the new primary (node 2) and sends its operations there.
    retry(|| on3.overwrite(b"c", b"after")).expect("write from node 3 after the promotion");
    assert_eq!(read_all(&on3, b"c"), b"after");
    on3.synchronize(10 * SECOND)
        .expect("synchronize after the promotion");
    let on2 = open_on(&lib2, "safCkpt=farpromo", None);
    assert_eq!(read_local(&on2, b"c"), b"after");
}

fn a_daemon_away_longer_than_the_grace_gets_its_agents_opens_back(objects: Objects) {
    let mut t = three("regrace", objects);
    let lib1 = library(&t.cluster, 1);
    let lib3 = library(&t.cluster, 3);
    // Created on node 1 (node 3 holds no replica), with a retention of 8 s.
    let attrs = CreationAttributes {
        retention_duration: 8 * SECOND,
        ..replicated(CreationFlags::WR_ACTIVE_REPLICA)
    };
    let on1 = open_on(&lib1, "safCkpt=regrace", Some(&attrs));
    retry(|| on1.create_section(Some(b"c"), TIME_END, b"kept")).expect("create");
    on1.synchronize(10 * SECOND).expect("synchronize");
    let on3 = open_on(&lib3, "safCkpt=regrace", None);
    // Node 3's agent now holds the only open.
    drop(on1);

    // Node 3's daemon is away for well over the grace (its idle timeout, 600 ms): the
    // directory closes node 3's opens, and the checkpoint's retention starts.
    t.n.pop().expect("node 3").stop();
    std::thread::sleep(Duration::from_millis(2500));
    let _n3 = ckptd::spawn(t.cluster.config.clone(), 3).expect("node 3 again");
    let back = Instant::now();
    assert_eq!(
        retry(|| on3.read_vec(b"c", 0)).expect("read after the restart"),
        b"kept"
    );

    // Back, node 3's daemon gives the directory its agent's open again: past the time
    // retention would have deleted the checkpoint, it is still there.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(back.elapsed()));
    let again = retry(|| lib1.open("safCkpt=regrace", None, OpenFlags::READ, 10 * SECOND))
        .expect("the checkpoint outlived its retention: node 3 holds it open");
    assert_eq!(read_all(&again, b"c"), b"kept");
    assert_eq!(read_all(&on3, b"c"), b"kept");
}

/// The replication position of node `node`'s replica of `instance`, read from its object.
fn position(cluster: &LocalCluster, node: u32, instance: u64) -> (u64, u64) {
    replica_on(cluster, node, instance)
        .expect("attach the replica")
        .replication_position()
}

/// Three nodes, directors 1 and 2, with a restart grace (idle timeout) long enough for a
/// daemon to come back within it.
fn three_with_grace(tag: &str, objects: Objects) -> Three {
    let cluster = local_cluster(tag, &[1, 2, 3], &[1, 2], false, 3000, objects);
    let n = [1, 2, 3]
        .iter()
        .map(|&i| ckptd::spawn(cluster.config.clone(), i).expect("node"))
        .collect();
    Three { n, cluster }
}

fn a_primary_whose_replicas_were_lost_gives_the_role_to_a_replica_that_has_the_state(
    objects: Objects,
) {
    let mut t = three_with_grace("wiped", objects);
    let lib1 = library(&t.cluster, 1);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
    // Created on node 3 (not a director): node 3 is the primary, 1 and 2 hold replicas.
    let on3 = open_on(&lib3, "safCkpt=wiped", Some(&attrs));
    let on1 = open_on(&lib1, "safCkpt=wiped", None);
    let instance = on1.instance();
    on3.create_section(Some(b"c"), TIME_END, b"synchronized")
        .expect("create on the primary");
    on3.synchronize(10 * SECOND).expect("synchronize");
    // A checkpoint this node's open created: its empty replica is the primary.
    let role = replica_on(&t.cluster, 3, instance)
        .expect("node 3's replica")
        .role();
    assert_eq!(role.0, ckpt_engine::Role::Primary);
    drop(on3);
    drop(lib3);

    // Node 3 loses its replicas (its tmpfs) and its daemon comes back within the restart
    // grace: the directory never saw it die and names it primary again. A sealed node
    // loses them with its daemon alone: no agent of node 3 holds this one any more.
    t.n.pop().expect("node 3").stop();
    if objects == Objects::Files {
        std::fs::remove_dir_all(t.cluster.shm_dir(3)).expect("wipe node 3's shm");
    }
    let _n3 = ckptd::spawn(t.cluster.config.clone(), 3).expect("node 3 again");

    // Its empty replica must not become the primary (its snapshot would erase the section
    // everywhere): another replica takes over with the state.
    assert_eq!(
        retry(|| on1.read_vec(b"c", 0)).expect("read after node 3's return"),
        b"synchronized"
    );
    retry(|| on1.overwrite(b"c", b"after")).expect("write after node 3's return");
    on1.synchronize(10 * SECOND)
        .expect("synchronize with every replica, node 3's included");
    assert_eq!(read_local(&on1, b"c"), b"after");
    let held = replica_on(&t.cluster, 3, instance)
        .expect("node 3 holds a replica again")
        .read_to_vec(b"c")
        .expect("node 3's replica has the section");
    assert_eq!(held, b"after");
}

fn an_all_replicas_primary_that_restarts_hands_over_in_a_new_term(objects: Objects) {
    let mut t = three_with_grace("allrestart", objects);
    let lib1 = library(&t.cluster, 1);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(CreationFlags::WR_ALL_REPLICAS);
    let on3 = open_on(&lib3, "safCkpt=allrestart", Some(&attrs));
    let on1 = open_on(&lib1, "safCkpt=allrestart", None);
    let instance = on1.instance();
    retry(|| on1.create_section(Some(b"c"), TIME_END, b"0")).expect("create");
    for i in 1..=20u32 {
        on1.overwrite(b"c", i.to_string().as_bytes())
            .expect("overwrite");
    }
    let before = position(&t.cluster, 1, instance);
    drop(on3);
    drop(lib3);

    // Node 3's daemon restarts within the restart grace: its staging copy is gone, and a
    // new one would number its journal from scratch within the same term.
    t.n.pop().expect("node 3").stop();
    let _n3 = ckptd::spawn(t.cluster.config.clone(), 3).expect("node 3 again");
    retry(|| on1.overwrite(b"c", b"after")).expect("write after the restart");
    assert_eq!(read_local(&on1, b"c"), b"after");
    let after = position(&t.cluster, 1, instance);
    assert!(
        after.0 > before.0,
        "the writes after the restart are in a new term: {before:x?} then {after:x?}"
    );
}

/// A reader on node 2 that pins one version of section `s` per request and never lets go
/// (a stuck standby process): each thread has one agent, whose 7 pin entries hold 7
/// versions, so the pins are spread over as many threads as needed.
struct StuckReaders {
    replica: std::sync::Arc<ckpt_engine::Replica>,
    threads: Vec<std::sync::mpsc::Sender<std::sync::mpsc::Sender<bool>>>,
}

impl StuckReaders {
    fn pin_current(&mut self) {
        for _ in 0..2 {
            if let Some(tx) = self.threads.last() {
                let (done, pinned) = std::sync::mpsc::channel();
                tx.send(done).expect("pinning thread");
                if pinned.recv().expect("pinning thread") {
                    return;
                }
            }
            let replica = std::sync::Arc::clone(&self.replica);
            let (tx, rx) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<bool>>();
            std::thread::spawn(move || {
                let mut guards = Vec::new();
                for done in rx {
                    let got = replica.borrow(b"s");
                    let _ = done.send(got.is_ok());
                    if let Ok(g) = got {
                        guards.push(g);
                    }
                }
            });
            self.threads.push(tx);
        }
        panic!("a fresh thread could not pin the section");
    }
}

fn a_replica_that_stops_acknowledging_is_evicted_writes_go_on_and_it_comes_back_to_resync(
    objects: Objects,
) {
    let t = three("evict", objects);
    let lib1 = library(&t.cluster, 1);
    let attrs = replicated(CreationFlags::WR_ALL_REPLICAS);
    let on1 = open_on(&lib1, "safCkpt=evict", Some(&attrs));
    let instance = on1.instance();
    retry(|| on1.create_section(Some(b"s"), TIME_END, b"0")).expect("create");
    let first_term = position(&t.cluster, 1, instance).0;

    // Node 2's replica gets every write (ALL_REPLICAS) until its readers pin every spare
    // slot: then it cannot apply the next one and stops acknowledging, while its daemon
    // stays connected. The primary's daemon asks the directory to evict it.
    let mut stuck = StuckReaders {
        replica: std::sync::Arc::new(
            replica_on(&t.cluster, 2, instance).expect("attach node 2's replica"),
        ),
        threads: Vec::new(),
    };
    let mut evicted_at = None;
    for k in 1..=300u32 {
        stuck.pin_current();
        on1.overwrite(b"s", k.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("ALL_REPLICAS write {k}: {e:?}"));
        assert_eq!(read_local(&on1, b"s"), k.to_string().as_bytes());
        if position(&t.cluster, 1, instance).0 > first_term {
            evicted_at = Some(k);
            break;
        }
    }
    let k = evicted_at.expect("node 2 was never evicted although it could not apply");
    // Evicted in a new term, the write that waited for it returned OK, and writes go on
    // with node 2 out of the set.
    for j in k + 1..=k + 5 {
        on1.overwrite(b"s", j.to_string().as_bytes())
            .expect("write after the eviction");
    }
    assert_eq!(read_local(&on1, b"s"), (k + 5).to_string().as_bytes());

    // Still connected, node 2 (a director) is placed again after a pause, makes the
    // replica anew (its stuck readers keep the old object's slots to themselves), and
    // resyncs from the primary.
    let want = (k + 5).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let back = replica_on(&t.cluster, 2, instance)
            .ok()
            .and_then(|r| r.read_to_vec(b"s").ok());
        if back.as_deref() == Some(want.as_bytes()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 was never placed again and caught up: {back:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And it is in sync: the next ALL_REPLICAS write is on it when it returns.
    on1.overwrite(b"s", b"last")
        .expect("write with node 2 back");
    let on2 = replica_on(&t.cluster, 2, instance).expect("node 2's new replica");
    assert_eq!(on2.read_to_vec(b"s").expect("read on node 2"), b"last");
    drop(stuck);
}

fn arrival_callbacks_fire_on_a_replica_node_as_the_primarys_writes_apply(objects: Objects) {
    use std::sync::{Arc, Mutex};
    let t = three("arrive", objects);
    let lib1 = library(&t.cluster, 1);
    let lib2 = library(&t.cluster, 2);
    let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
    let on1 = open_on(&lib1, "safCkpt=arrive", Some(&attrs));
    retry(|| on1.create_section(Some(b"s"), TIME_END, b"0")).expect("create");
    // A hot standby on node 2, which holds a replica: it reads its own node's copy.
    let on2 = open_on(&lib2, "safCkpt=arrive", None);
    let got: Arc<Mutex<Vec<ckpt_agent::ArrivalElement>>> = Arc::default();
    let g = Arc::clone(&got);
    lib2.register_arrival_callback(Box::new(move |_, elems| {
        g.lock().unwrap().extend_from_slice(elems);
    }))
    .expect("register the arrival callback");

    for i in 1..=20u32 {
        on1.overwrite(b"s", i.to_string().as_bytes())
            .expect("overwrite on the primary");
    }
    let last = ckpt_agent::ArrivalElement {
        section_id: b"s".to_vec(),
        offset: 0,
        size: 2,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        lib2.dispatch(ckpt_agent::DispatchFlags::All)
            .expect("dispatch on node 2");
        if got.lock().unwrap().contains(&last) && read_local(&on2, b"s") == b"20" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no arrival of the primary's last write on node 2: {:?}",
            got.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only the writes made on node 1 were reported, each a whole-section overwrite.
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .all(|e| e.section_id == b"s" && e.offset == 0 && e.size <= 2),
        "{:?}",
        got.lock().unwrap()
    );
}

fn arrival_callbacks_fire_on_a_node_without_a_replica_and_resync_when_the_primary_changes(
    objects: Objects,
) {
    arrivals_far_from_the_replicas(objects, CreationFlags::WR_ACTIVE_REPLICA);
}

fn all_replicas_arrivals_reach_a_node_without_a_replica_as_they_are_published(objects: Objects) {
    arrivals_far_from_the_replicas(objects, CreationFlags::WR_ALL_REPLICAS);
}

/// Arrival callbacks on node 3, which holds no replica of a checkpoint with `flags`
/// created on node 1, before and after node 1 dies.
fn arrivals_far_from_the_replicas(objects: Objects, flags: CreationFlags) {
    use ckpt_agent::ArrivalElement;
    use std::sync::{Arc, Mutex};
    let mut t = three("arrfar", objects);
    let lib1 = library(&t.cluster, 1);
    let lib2 = library(&t.cluster, 2);
    let lib3 = library(&t.cluster, 3);
    let attrs = replicated(flags);
    // Created on node 1: node 1 is the primary, node 2 (a director) holds a replica.
    let on1 = open_on(&lib1, "safCkpt=arrfar", Some(&attrs));
    retry(|| on1.create_section(Some(b"s"), TIME_END, b"initial")).expect("create");
    let on3 = open_on(&lib3, "safCkpt=arrfar", None);
    assert!(
        !holds(&t.cluster, 3, on1.instance()),
        "node 3 is not a director and did not create it: no replica there"
    );
    let calls: Arc<Mutex<Vec<Vec<ArrivalElement>>>> = Arc::default();
    let c = Arc::clone(&calls);
    lib3.register_arrival_callback(Box::new(move |_, elems| {
        c.lock().unwrap().push(elems.to_vec());
    }))
    .expect("register the arrival callback on node 3");
    let element = |id: &[u8], offset: u64, size: u64| ArrivalElement {
        section_id: id.to_vec(),
        offset,
        size,
    };
    let wait_for = |what: &str, done: &dyn Fn(&[Vec<ArrivalElement>]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            lib3.dispatch(ckpt_agent::DispatchFlags::All)
                .expect("dispatch on node 3");
            if done(&calls.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never reached node 3: {:?}",
                calls.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Writes on the primary reach node 3's callback: overwrites, a creation, and a write
    // at an offset, each as it was made.
    for i in 10..=30u32 {
        on1.overwrite(b"s", i.to_string().as_bytes())
            .expect("overwrite on the primary");
    }
    on1.create_section(Some(b"t"), TIME_END, b"01234567")
        .expect("create t");
    on1.write(&[ckpt_agent::WriteElement {
        section_id: b"t",
        offset: 4,
        data: b"xy",
    }])
    .expect("write into t");
    let last = [
        element(b"s", 0, 2),
        element(b"t", 0, 8),
        element(b"t", 4, 2),
    ];
    wait_for("the primary's writes", &|calls| {
        let all: Vec<&ArrivalElement> = calls.iter().flatten().collect();
        last.iter().all(|e| all.contains(&e))
    });
    {
        let calls = calls.lock().unwrap();
        let all: Vec<&ArrivalElement> = calls.iter().flatten().collect();
        // The section's creation came before the callback was registered: not reported.
        assert!(
            !all.contains(&&element(b"s", 0, 7)),
            "a change from before the subscription was reported: {all:?}"
        );
        assert_eq!(
            all.iter().filter(|e| e.section_id == b"s").count(),
            21,
            "one arrival per overwrite: {all:?}"
        );
    }

    // The primary's node dies: the directory promotes node 2's replica in a new term, and
    // node 3's subscriber gets every section (changes may have been lost in between).
    let before = calls.lock().unwrap().len();
    drop(on1);
    std::mem::forget(lib1); // its node dies under it
    t.n.remove(0).stop();
    wait_for("every section after the promotion", &|calls| {
        calls[before..].iter().any(|c| {
            c.len() == 2 && c.contains(&element(b"s", 0, 2)) && c.contains(&element(b"t", 0, 8))
        })
    });
    // And follows the new primary's journal.
    let on2 = open_on(&lib2, "safCkpt=arrfar", None);
    retry(|| on2.overwrite(b"t", b"after")).expect("overwrite on the new primary");
    wait_for("the new primary's write", &|calls| {
        calls.iter().flatten().any(|e| *e == element(b"t", 0, 5))
    });
    drop(on3);
}

/// One `#[test]` per scenario and kind of replica object.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// The nodes keep their replicas as files in their shm directories.
        mod files {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Objects::Files);
                }
            )*
        }
        /// The nodes keep their replicas as sealed memfds (`sealed = true`).
        mod sealed {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Objects::Sealed);
                }
            )*
        }
    };
}

scenarios!(
    a_synchronized_write_is_on_the_standby_node_and_survives_the_active_nodes_death,
    a_node_without_a_replica_writes_and_reads_through_the_primarys_node,
    writes_on_a_replica_that_is_not_the_primary_go_to_the_primary_and_reads_see_them,
    an_all_replicas_write_returns_only_once_every_replica_has_it,
    active_replica_set_while_the_old_active_lives_first_catches_the_new_one_up,
    a_restarted_ckptd_keeps_its_agents_handles_and_opens,
    a_daemon_away_longer_than_the_grace_gets_its_agents_opens_back,
    a_non_collocated_checkpoint_gets_a_new_primary_when_its_primarys_node_dies,
    a_node_without_a_replica_writes_through_the_new_primary_after_a_promotion,
    a_primary_whose_replicas_were_lost_gives_the_role_to_a_replica_that_has_the_state,
    an_all_replicas_primary_that_restarts_hands_over_in_a_new_term,
    a_replica_that_stops_acknowledging_is_evicted_writes_go_on_and_it_comes_back_to_resync,
    arrival_callbacks_fire_on_a_replica_node_as_the_primarys_writes_apply,
    arrival_callbacks_fire_on_a_node_without_a_replica_and_resync_when_the_primary_changes,
    all_replicas_arrivals_reach_a_node_without_a_replica_as_they_are_published,
);

/// Scenarios of sealed nodes alone.
mod sealed_only {
    use super::*;

    /// Node 3's daemon stays down long enough that its agent reconnects (with its
    /// back-off) well after the directory has assigned the node its replicas again: the
    /// daemon waits for the agent's hand-back instead of making the replica anew.
    #[test]
    fn a_ckptd_down_for_a_while_waits_for_its_agent_to_hand_the_replica_back() {
        let mut t = three_with_grace("slowback", Objects::Sealed);
        let lib3 = library(&t.cluster, 3);
        let lib1 = library(&t.cluster, 1);
        let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
        // Created on node 3: its replica is the primary, 1 and 2 hold replicas.
        let on3 = open_on(&lib3, "safCkpt=slowback", Some(&attrs));
        let on1 = open_on(&lib1, "safCkpt=slowback", None);
        let instance = on3.instance();
        on3.create_section(Some(b"c"), TIME_END, b"before")
            .expect("create");
        on3.synchronize(10 * SECOND).expect("synchronize");

        t.n.pop().expect("node 3").stop();
        std::thread::sleep(Duration::from_millis(1500));
        let _n3 = ckptd::spawn(t.cluster.config.clone(), 3).expect("node 3 again");

        // The agent's handle still works on the same replica, which node 3 replicates.
        retry(|| on3.overwrite(b"c", b"after")).expect("write on node 3 after the restart");
        retry(|| on3.synchronize(10 * SECOND)).expect("synchronize after the restart");
        assert_eq!(read_local(&on1, b"c"), b"after");
        let held = replica_on(&t.cluster, 3, instance).expect("node 3 holds its replica");
        assert_eq!(held.read_to_vec(b"c").expect("read"), b"after");
    }

    /// Each open's answer carries its own descriptor, so threads that open the same
    /// checkpoint at once all map the node's replica; and nothing of it is in the node's
    /// directory, not even a node registry.
    #[test]
    fn concurrent_opens_on_a_sealed_node_each_get_the_replicas_descriptor() {
        let t = three("sealedopen", Objects::Sealed);
        let lib1 = library(&t.cluster, 1);
        let attrs = replicated(CreationFlags::WR_ACTIVE_REPLICA);
        let first = open_on(&lib1, "safCkpt=sealedopen", Some(&attrs));
        first
            .create_section(Some(b"s"), TIME_END, b"shared")
            .expect("create");
        let lib2 = std::sync::Arc::new(library(&t.cluster, 2));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let lib = std::sync::Arc::clone(&lib2);
                std::thread::spawn(move || {
                    let ck = open_on(&lib, "safCkpt=sealedopen", None);
                    ck.synchronize(10 * SECOND).expect("synchronize");
                    read_local(&ck, b"s")
                })
            })
            .collect();
        for th in threads {
            assert_eq!(th.join().expect("an opening thread"), b"shared");
        }
        for node in [1, 2] {
            let names: Vec<String> = std::fs::read_dir(t.cluster.shm_dir(node))
                .expect("list the shm dir")
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| ckptd::store::parse_object_name(n).is_some() || n == "registry")
                .collect();
            assert_eq!(names, Vec::<String>::new(), "node {node}'s directory");
        }
    }
}
