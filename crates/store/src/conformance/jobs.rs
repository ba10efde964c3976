//! Conformance checks for background jobs ([`Store::due_jobs`], [`Store::advance_job`],
//! [`Store::job`]) and the effects their batches apply: revoking sessions without a second
//! factor and setting the admin flag.

use super::logins::{admin, applied, apply, session, the_user, STATE_CHANGED};
use super::*;
use twofold_core::login::*;
use twofold_core::messaging::*;

fn job(t: &Tenant, kind: &str, run_at: i64, created_at: i64) -> Job {
    Job {
        id: 0,
        tenant_id: t.id,
        kind: kind.into(),
        payload: format!(r#"{{"kind":"{kind}","run_at":{run_at}}}"#),
        cursor: 0,
        run_at,
        done_at: None,
        processed: 0,
        created_at,
    }
}

/// Inserts `j` through [`Store::apply`] and returns it as stored (with the assigned id),
/// found as the only job of the store that `job` did not know before.
async fn insert(s: &DynStore, t: &Tenant, j: Job) -> Job {
    let before = all_jobs(s).await;
    applied(s, t, vec![Effect::InsertJob(j.clone())], j.created_at).await;
    let mut new: Vec<Job> = all_jobs(s)
        .await
        .into_iter()
        .filter(|x| !before.iter().any(|b| b.id == x.id))
        .collect();
    assert_eq!(new.len(), 1, "one job inserted");
    let stored = new.remove(0);
    assert_eq!(
        stored,
        Job { id: stored.id, ..j },
        "stored as given but the id"
    );
    assert_eq!(s.job(stored.id).await.unwrap(), Some(stored.clone()));
    stored
}

/// Every unfinished job, whatever its run_at.
async fn all_jobs(s: &DynStore) -> Vec<Job> {
    s.due_jobs(i64::MAX, 1000).await.unwrap()
}

fn ids(jobs: &[Job]) -> Vec<i64> {
    jobs.iter().map(|j| j.id).collect()
}

fn mail(t: &Tenant, u: &User, tag: &str, at: i64) -> Effect {
    Effect::Enqueue(NewMessage {
        message_id: format!("{tag}@jobs.test"),
        tenant_id: t.id,
        user_id: Some(u.id),
        channel: Channel::Email,
        destination: format!("{}@example.com", u.external_id),
        template: TemplateKind::Invitation,
        sealed_params: vec![3; 16],
        created_at: at,
    })
}

async fn queued(s: &DynStore, t: &Tenant) -> Vec<String> {
    let mut ids: Vec<String> = s
        .list_messages(MessageQuery {
            tenant_id: Some(t.id),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    ids.sort();
    ids
}

pub async fn jobs_are_due_from_run_at_until_done(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let b = tenant(&s, "beta").await;
    assert!(all_jobs(&s).await.is_empty());
    assert_eq!(s.job(1).await.unwrap(), None);
    let given_id = Job {
        id: 4242,
        ..job(&t, "invitations", 1_000, 100)
    };
    let j1 = insert(&s, &t, given_id).await;
    assert_ne!(j1.id, 4242, "the store assigns the id");
    let j2 = insert(&s, &b, job(&b, "revoke_sessions", 2_000, 200)).await;
    let j3 = insert(&s, &t, job(&t, "invitations", 3_000, 300)).await;
    let finished = Job {
        done_at: Some(400),
        ..job(&t, "invitations", 0, 400)
    };
    applied(&s, &t, vec![Effect::InsertJob(finished)], 400).await;
    let ids_all = [j1.id, j2.id, j3.id];
    assert_eq!(
        ids_all
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "distinct ids"
    );
    assert!(
        s.due_jobs(999, 10).await.unwrap().is_empty(),
        "none due yet"
    );
    assert_eq!(s.due_jobs(1_000, 10).await.unwrap(), vec![j1.clone()]);
    assert_eq!(
        s.due_jobs(2_999, 10).await.unwrap(),
        vec![j1.clone(), j2.clone()],
        "every tenant's, oldest first"
    );
    assert_eq!(
        ids(&s.due_jobs(5_000, 10).await.unwrap()),
        ids_all.to_vec(),
        "a job inserted finished is never due"
    );
    assert_eq!(
        ids(&s.due_jobs(5_000, 2).await.unwrap()),
        vec![j1.id, j2.id]
    );
    // Finishing a job takes it off the list for good.
    assert!(s
        .advance_job(j1.id, 0, 7, 1, true, vec![], 5_000)
        .await
        .unwrap());
    assert_eq!(
        ids(&s.due_jobs(5_000, 10).await.unwrap()),
        vec![j2.id, j3.id]
    );
    assert_eq!(
        s.job(j1.id).await.unwrap(),
        Some(Job {
            cursor: 7,
            processed: 1,
            done_at: Some(5_000),
            ..j1
        }),
        "finished jobs stay readable"
    );
    // A failed insert (with the rest of its apply) leaves no job behind.
    let r = apply(
        &s,
        &t,
        vec![
            Effect::InsertJob(job(&t, "invitations", 0, 500)),
            Effect::SetSkip {
                user_id: 1_000_000,
                until: 1,
            },
        ],
        500,
    )
    .await;
    assert_eq!(r, Err(STATE_CHANGED));
    assert_eq!(ids(&all_jobs(&s).await), vec![j2.id, j3.id]);
}

pub async fn a_job_advances_once_per_cursor(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let j = insert(&s, &t, job(&t, "invitations", 1_000, 1_000)).await;
    let batch1 = || vec![mail(&t, &alice, "a1", 2_000), mail(&t, &bob, "b1", 2_000)];
    assert!(s
        .advance_job(j.id, 0, bob.id, 2, false, batch1(), 2_000)
        .await
        .unwrap());
    let after1 = Job {
        cursor: bob.id,
        processed: 2,
        ..j.clone()
    };
    assert_eq!(s.job(j.id).await.unwrap(), Some(after1.clone()));
    assert_eq!(queued(&s, &t).await, vec!["a1@jobs.test", "b1@jobs.test"]);
    assert_eq!(
        ids(&s.due_jobs(2_000, 10).await.unwrap()),
        vec![j.id],
        "not done yet"
    );

    // The same batch again (another runner, or a retry after a lost reply): nothing happens.
    for (from, why) in [(0, "an old cursor"), (bob.id + 5, "a cursor from nowhere")] {
        let again = vec![mail(&t, &alice, &format!("again{from}"), 2_100)];
        assert!(
            !s.advance_job(j.id, from, bob.id + 10, 1, false, again, 2_100)
                .await
                .unwrap(),
            "{why}"
        );
        assert_eq!(s.job(j.id).await.unwrap(), Some(after1.clone()), "{why}");
        assert_eq!(
            queued(&s, &t).await.len(),
            2,
            "{why}: no duplicate messages"
        );
    }
    assert!(
        !s.advance_job(j.id + 1_000, 0, 1, 1, false, vec![], 2_100)
            .await
            .unwrap(),
        "no such job"
    );

    // A batch whose effect fails moves nothing and queues nothing.
    let failing = vec![
        mail(&t, &alice, "a2", 3_000),
        Effect::SetAdmin {
            user_id: bob.id + 1_000,
            is_admin: true,
        },
    ];
    assert_eq!(
        s.advance_job(j.id, bob.id, bob.id + 1, 1, true, failing, 3_000)
            .await,
        Err(STATE_CHANGED)
    );
    assert_eq!(s.job(j.id).await.unwrap(), Some(after1.clone()));
    assert_eq!(queued(&s, &t).await.len(), 2);

    // The last batch finishes the job; afterwards it cannot move, from any cursor.
    assert!(s
        .advance_job(
            j.id,
            bob.id,
            bob.id + 1,
            1,
            true,
            vec![mail(&t, &alice, "a3", 4_000)],
            4_000
        )
        .await
        .unwrap());
    let finished = Job {
        cursor: bob.id + 1,
        processed: 3,
        done_at: Some(4_000),
        ..j.clone()
    };
    assert_eq!(s.job(j.id).await.unwrap(), Some(finished.clone()));
    assert!(s.due_jobs(i64::MAX, 10).await.unwrap().is_empty());
    for from in [bob.id + 1, bob.id, 0] {
        assert!(!s
            .advance_job(
                j.id,
                from,
                from + 1,
                1,
                true,
                vec![mail(&t, &alice, &format!("late{from}"), 5_000)],
                5_000
            )
            .await
            .unwrap());
    }
    assert_eq!(s.job(j.id).await.unwrap(), Some(finished));
    assert_eq!(
        queued(&s, &t).await,
        vec!["a1@jobs.test", "a3@jobs.test", "b1@jobs.test"]
    );
}

pub async fn parallel_advances_from_one_cursor_succeed_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let j = insert(&s, &t, job(&t, "invitations", 1_000, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, t, alice) = (s.clone(), t.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let effects = vec![mail(&t, &alice, &format!("p{i}"), 2_000)];
            s.advance_job(j.id, 0, alice.id, 1, i % 2 == 0, effects, 2_000)
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(queued(&s, &t).await.len(), 1);
    let now = s.job(j.id).await.unwrap().unwrap();
    assert_eq!((now.cursor, now.processed), (alice.id, 1));
}

fn plain_session(t: &Tenant, u: &User, n: u32, at: i64) -> Session {
    Session {
        second_factor: false,
        amr: "pwd".into(),
        ..session(t, u, n, at)
    }
}

pub async fn revoking_sessions_without_2fa_spares_the_rest(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let carol = user(&s, &t, "carol").await;
    let cut = 2_000;
    let target = plain_session(&t, &alice, 1, 1_000);
    let with_2fa = session(&t, &alice, 2, 1_000);
    let at_cut = plain_session(&t, &alice, 3, cut);
    let newer = plain_session(&t, &alice, 4, cut + 1);
    let revoked = Session {
        revoked_at: Some(1_500),
        revoke_reason: Some("user".into()),
        ..plain_session(&t, &alice, 5, 1_100)
    };
    let bobs = plain_session(&t, &bob, 6, 1_000);
    let all = [&target, &with_2fa, &at_cut, &newer, &revoked, &bobs];
    for x in all {
        applied(&s, &t, vec![Effect::InsertSession(x.clone())], x.created_at).await;
    }
    let revoke = |u: &User, at: i64| Effect::RevokeSessionsWithout2fa {
        user_id: u.id,
        created_before: cut,
        at,
    };
    applied(&s, &t, vec![revoke(&alice, 3_000)], 3_000).await;
    let expect_revoked = Session {
        revoked_at: Some(3_000),
        revoke_reason: Some("2fa_required".into()),
        ..target.clone()
    };
    assert_eq!(
        s.session(&target.token_hash).await.unwrap(),
        Some(expect_revoked.clone())
    );
    for x in &all[1..] {
        assert_eq!(
            s.session(&x.token_hash).await.unwrap().as_ref(),
            Some(*x),
            "{} is untouched",
            x.id
        );
    }
    // Nothing (left) to revoke is not an error, and changes nothing.
    applied(
        &s,
        &t,
        vec![revoke(&alice, 4_000), revoke(&carol, 4_000)],
        4_000,
    )
    .await;
    assert_eq!(
        s.session(&target.token_hash).await.unwrap(),
        Some(expect_revoked)
    );
    assert!(s.sessions_of(carol.id).await.unwrap().is_empty());
    assert_eq!(
        s.session(&bobs.token_hash).await.unwrap(),
        Some(bobs.clone())
    );
    // As a job's batch: revoked together with the move of the cursor.
    let j = insert(&s, &t, job(&t, "revoke_sessions", 0, 5_000)).await;
    assert!(s
        .advance_job(j.id, 0, bob.id, 1, false, vec![revoke(&bob, 5_000)], 5_000)
        .await
        .unwrap());
    let bobs_now = s.session(&bobs.token_hash).await.unwrap().unwrap();
    assert_eq!(
        (bobs_now.revoked_at, bobs_now.revoke_reason.as_deref()),
        (Some(5_000), Some("2fa_required"))
    );
}

pub async fn the_admin_flag_round_trips(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let root = admin(&s, &t, "root").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let set = |u: &User, is_admin: bool| Effect::SetAdmin {
        user_id: u.id,
        is_admin,
    };
    applied(&s, &t, vec![set(&alice, true)], 100).await;
    let alice_now = the_user(&s, &alice).await;
    assert!(alice_now.is_admin);
    assert_eq!(
        alice_now,
        User {
            is_admin: true,
            ..alice.clone()
        },
        "only the flag changes"
    );
    assert_eq!(
        s.admins_of(t.id).await.unwrap(),
        vec![root.clone(), alice_now.clone()]
    );
    applied(&s, &t, vec![set(&root, false)], 200).await;
    assert!(!the_user(&s, &root).await.is_admin);
    assert_eq!(s.admins_of(t.id).await.unwrap(), vec![alice_now.clone()]);
    // Setting the flag a user already has is no failed precondition.
    applied(&s, &t, vec![set(&bob, false), set(&alice, true)], 300).await;
    assert_eq!(s.admins_of(t.id).await.unwrap(), vec![alice_now.clone()]);
    // A missing user fails the whole apply.
    let missing = Effect::SetAdmin {
        user_id: bob.id + 1_000,
        is_admin: true,
    };
    assert_eq!(
        apply(&s, &t, vec![set(&bob, true), missing], 400).await,
        Err(STATE_CHANGED)
    );
    assert!(!the_user(&s, &bob).await.is_admin);
    assert_eq!(s.admins_of(t.id).await.unwrap(), vec![alice_now]);
    assert_eq!(
        audit_trail_len(&s, &t).await,
        3,
        "the refused apply wrote no audit row"
    );
}

async fn audit_trail_len(s: &DynStore, t: &Tenant) -> usize {
    super::messaging::audit_trail(s, t, "login.test")
        .await
        .len()
}

// ------------------------------------------------------------ two handles on one database
//
// Not in `conformance_tests!`: like the `two_handles_*` checks in `messaging`, this needs two
// independent handles on the same database (two processes, or two nodes).

/// Runners on two handles advance one job from the same cursor: one batch is done, once.
pub async fn two_handles_advance_a_job_once(a: DynStore, b: DynStore) {
    let t = tenant(&a, "acme").await;
    let alice = user(&a, &t, "alice").await;
    let j = insert(&a, &t, job(&t, "invitations", 1_000, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (t, alice) = (t.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let effects = vec![mail(&t, &alice, &format!("p{i}"), 2_000)];
            s.advance_job(j.id, 0, alice.id, 1, false, effects, 2_000)
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(queued(&b, &t).await.len(), 1);
    let now = b.job(j.id).await.unwrap().unwrap();
    assert_eq!((now.cursor, now.processed), (alice.id, 1));
}
