//! A read-only client whose only member is cut off from its peers (issue
//! 29, item 3): that member, leaderless, still answers watch progress
//! requests at its own stale revision, and the client holds no lease
//! whose keepalives would fail and steer it away. Its view must say
//! Stale, never keep answering UP for a service the majority has since
//! seen DOWN as if it were current. Two things end such a watch: the
//! check of a quiet stream, whose linearizable revision read the member
//! cannot serve (src/watch/liveness.rs), and etcd itself, which closes a
//! require-leader watch once its member has had no leader for a few
//! election timeouts (the client asks for require-leader). This test
//! guards the outcome, whichever acts first. About 18 s.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::time::{Duration, Instant};

use common::*;
use os_lively::{Client, ErrorKind, Service};

const TTL: u64 = 2;

#[test]
fn a_read_only_view_on_a_member_cut_off_from_its_peers_goes_stale_and_never_says_up_for_a_down_service()
 {
    let ns = namespace("cut-off-reader");
    let cluster = Cluster::start_with(
        3,
        EtcdOpts {
            peer_proxies: true,
            auth_token: Some("simple".into()),
            ..Default::default()
        },
    );
    let m = |i: usize| cluster.member_ref(i).endpoint();
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .expect("leader");
    let x = (0..3).find(|i| *i != leader).unwrap();
    let majority: Vec<String> = (0..3).filter(|i| *i != x).map(m).collect();
    Raw::connect(&majority).enable_auth_with_owner_and_reader(&ns);
    let raw = Raw::connect_with_user(&majority, "root", "rootpw");
    let mut owner_cfg = config(&majority, &ns, TTL);
    owner_cfg.user("svc", "svc-secret-pw").unwrap();
    let owner = Client::connect(&owner_cfg).unwrap();
    let svc = owner.update(&Service::new("nova", "n1")).unwrap();

    // The reader knows only member x, and may only read: no lease.
    let mut reader_cfg = config(&[m(x)], &ns, TTL);
    reader_cfg.user("ro", "ro-secret-pw").unwrap();
    let reader = Client::connect(&reader_cfg).expect("a read-only user connects");
    let view = reader.view().expect("view");
    assert!(
        wait_until(Duration::from_secs(10), || matches!(
            view.is_up(&svc),
            Ok(true)
        )),
        "the view never loaded"
    );
    let leases = raw.leases();
    // Let the watch settle into its quiet checks (progress answered).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(view.is_connected());

    cluster.isolate(x);
    owner
        .down(&svc, "cut-off test", 0, 0)
        .expect("down via the majority");
    let downed = Instant::now();
    assert_eq!(
        oracle::Snapshot::read(&raw, &ns).liveness().get(&svc),
        Some(&false),
        "the majority holds the service DOWN"
    );

    // Detection: the next check starts within the backed-off period (at
    // most TTL/2) plus its jitter (quiet/2 = TTL/8); member x answers the
    // progress request, the linearizable revision read that follows gets
    // no answer within the request timeout (3 s) and the stream is
    // dropped; the view says Stale once disconnected for its bound (the
    // status TTL, 2 s). 1 + 0.25 + 3 + 2 = 6.25 s; allow 8 s.
    let bound = Duration::from_secs(8);
    let mut stale_at = None;
    let mut ups_claimed_current = 0;
    while downed.elapsed() < bound + Duration::from_secs(3) {
        match view.is_up(&svc) {
            Err(e) if e.kind() == ErrorKind::Stale => {
                stale_at.get_or_insert(downed.elapsed());
            }
            Ok(true) if stale_at.is_some() => ups_claimed_current += 1,
            Ok(false) => panic!("member x cannot know of the DOWN while cut off"),
            Ok(true) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stale_at = stale_at.expect("the view on the cut-off member never said Stale");
    println!("stale after {stale_at:?} (bound {bound:?})");
    assert!(
        stale_at <= bound,
        "Stale only after {stale_at:?} (bound {bound:?})"
    );
    assert_eq!(
        ups_claimed_current, 0,
        "the view answered UP again after going Stale, with its member still cut off"
    );
    // The view never confirms itself current against etcd.
    assert!(view.sync(Duration::from_secs(1)).is_err());
    assert!(!view.is_connected());
    // The reader wrote nothing: no lease of its own.
    assert_eq!(raw.leases(), leases, "the read-only client granted a lease");

    // Back with its peers, the member catches up and the view is current
    // again, with the DOWN.
    cluster.rejoin(x);
    assert!(
        wait_until(Duration::from_secs(10), || view
            .sync(Duration::from_secs(1))
            .is_ok()
            && matches!(view.is_up(&svc), Ok(false))),
        "the view did not come back with the DOWN after the member rejoined"
    );
}
