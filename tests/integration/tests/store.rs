//! The DynamoDB store against the local AWS endpoint: conditional writes, idempotent creates,
//! pagination, consumer group limits under concurrency, deleting an instance with what it owns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry_domain::consumer_group::{ConsumerGroup, GroupName, PasswordHash, Username};
use ferry_domain::id::{ConsumerGroupId, InstanceId, TaskId};
use ferry_domain::instance::{BillingRequest, Instance, InstanceClass, InstanceName, Mode, Term};
use ferry_domain::task::{Task, TaskEvent};
use ferry_store::{CreateOutcome, PageToken, Store, StoreError, TaskRecord};
use ferry_testkit::TestContext;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
}

fn instance(name: &str, mode: Mode, at: DateTime<Utc>) -> Instance {
    Instance::new(
        InstanceId::generate(),
        InstanceName::try_from(name.to_owned()).unwrap(),
        mode,
        InstanceClass::Small,
        BillingRequest::PayAsYouGo {},
        at,
    )
    .unwrap()
}

fn task_of(i: &Instance) -> TaskRecord {
    TaskRecord {
        task: Task::new(TaskId::generate(), i.id().clone(), i.mode()),
        config: None,
        config_version: 0,
        updated_at: i.created_at(),
        topic_generation: 0,
        start: None,
    }
}

async fn create(store: &Store, i: &Instance) -> Result<()> {
    let out = store
        .create_instance(i, &task_of(i), None, i.created_at())
        .await?;
    assert!(matches!(out, CreateOutcome::Created(_)));
    Ok(())
}

fn group(instance: &Instance, username: &str, at: DateTime<Utc>) -> ConsumerGroup {
    ConsumerGroup::new(
        ConsumerGroupId::generate(),
        instance.id().clone(),
        GroupName::try_from(format!("group of {username}")).unwrap(),
        Username::try_from(username.to_owned()).unwrap(),
        PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()).unwrap(),
        at,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn create_read_and_idempotent_create() -> Result<()> {
    let ctx = TestContext::spawn().await?;
    let store = ctx.store().await;
    let i = instance("orders", Mode::Tracking, t0());
    let out = store
        .create_instance(&i, &task_of(&i), Some(("tok-1", "fp-a")), t0())
        .await?;
    assert!(matches!(out, CreateOutcome::Created(ref v) if v.version == 1));

    let read = store.get_instance(i.id()).await?.expect("instance");
    assert_eq!(read.value, i);
    let task = store.get_task(i.id()).await?.expect("task");
    assert_eq!(
        task.value.task.state(),
        &ferry_domain::task::TaskState::NotConfigured
    );

    // A retry with the same token and request gets the same instance back.
    let retry = instance("orders", Mode::Tracking, t0());
    match store
        .create_instance(&retry, &task_of(&retry), Some(("tok-1", "fp-a")), t0())
        .await?
    {
        CreateOutcome::Existing(v) => assert_eq!(v.value.id(), i.id()),
        other => panic!("expected the existing instance, got {other:?}"),
    }
    assert!(
        store.get_instance(retry.id()).await?.is_none(),
        "the retry created nothing"
    );

    // The same token with another request is refused.
    let other = instance("other", Mode::Sync, t0());
    let err = store
        .create_instance(&other, &task_of(&other), Some(("tok-1", "fp-b")), t0())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_updates_give_one_success_and_one_conflict() -> Result<()> {
    let ctx = TestContext::spawn().await?;
    let store = ctx.store().await;
    let mut i = instance("subs", Mode::Tracking, t0());
    i = Instance::new(
        i.id().clone(),
        i.name().clone(),
        Mode::Tracking,
        InstanceClass::Small,
        BillingRequest::Subscription {
            months: Term::try_from(1)?,
        },
        t0(),
    )?;
    create(&store, &i).await?;

    let read = store.get_instance(i.id()).await?.expect("instance");
    let (mut a, mut b) = (read.value.clone(), read.value.clone());
    a.renew(Term::try_from(1)?, t0())?;
    b.renew(Term::try_from(6)?, t0())?;
    let (ra, rb) = tokio::join!(
        store.update_instance(&a, read.version),
        store.update_instance(&b, read.version)
    );
    let outcomes = [ra.is_ok(), rb.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "{ra:?} {rb:?}"
    );
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(matches!(loser, Err(StoreError::Conflict { .. })));

    let now = store.get_instance(i.id()).await?.expect("instance");
    assert_eq!(now.version, 2);
    assert!(
        now.value == a || now.value == b,
        "one whole update won, nothing merged"
    );

    // Task records follow the same rule.
    let task = store.get_task(i.id()).await?.expect("task");
    let mut changed = task.value.clone();
    changed.task.apply(&TaskEvent::Configure)?;
    changed.config_version = 1;
    assert_eq!(store.update_task(&changed, task.version).await?, 2);
    assert!(matches!(
        store.update_task(&changed, task.version).await,
        Err(StoreError::Conflict { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_newest_first_and_filter() -> Result<()> {
    let ctx = TestContext::spawn().await?;
    let store = ctx.store().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let mode = if n % 2 == 0 {
            Mode::Tracking
        } else {
            Mode::Sync
        };
        let i = instance(&format!("i{n}"), mode, t0() + Duration::minutes(n));
        create(&store, &i).await?;
        ids.push(i.id().clone());
    }
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut token: Option<PageToken> = None;
    let mut pages = 0;
    loop {
        let page = store.list_instances(3, token.as_ref(), |_| true).await?;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|v| v.value.id().clone()));
        pages += 1;
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert!(pages >= 3);

    let sync = store
        .list_instances(10, None, |i| i.mode() == Mode::Sync)
        .await?;
    assert_eq!(sync.items.len(), 3);
    assert!(sync.next.is_none());
    // A page of 2 out of the filtered 3 still says there is more.
    let first = store
        .list_instances(2, None, |i| i.mode() == Mode::Sync)
        .await?;
    assert_eq!(first.items.len(), 2);
    let rest = store
        .list_instances(2, first.next.as_ref(), |i| i.mode() == Mode::Sync)
        .await?;
    assert_eq!(rest.items.len(), 1);

    let forged = PageToken::from_client("eyJwayI6IlRPS0VOI3gifQ".into())?;
    assert!(matches!(
        store.list_instances(2, Some(&forged), |_| true).await,
        Err(StoreError::BadPageToken)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_groups_respect_limit_and_unique_usernames_under_concurrency() -> Result<()> {
    let ctx = TestContext::spawn().await?;
    let store = ctx.store().await;
    let i = instance("groups", Mode::Tracking, t0());
    create(&store, &i).await?;

    // Ten concurrent creates against a limit of four: exactly four win.
    let attempts: Vec<ConsumerGroup> = (0..10)
        .map(|n| group(&i, &format!("reader{n}"), t0() + Duration::seconds(n)))
        .collect();
    let results =
        futures::future::join_all(attempts.iter().map(|g| store.create_group(g, 4))).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 4, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(
                e,
                StoreError::QuotaExceeded { .. } | StoreError::Conflict { .. }
            ))
    );
    let listed = store.list_groups(i.id()).await?;
    assert_eq!(listed.len(), 4);

    // Usernames are unique within the instance.
    store.delete_group(&listed[0].value).await?;
    let dup = group(&i, listed[1].value.username().as_str(), t0());
    assert!(matches!(
        store.create_group(&dup, 4).await,
        Err(StoreError::Duplicate { .. })
    ));
    // Deleting freed a place and the username.
    let again = group(&i, listed[0].value.username().as_str(), t0());
    store.create_group(&again, 4).await?;
    assert_eq!(store.list_groups(i.id()).await?.len(), 4);

    // A group of a missing instance.
    let ghost = instance("ghost", Mode::Tracking, t0());
    assert!(matches!(
        store.create_group(&group(&ghost, "x", t0()), 4).await,
        Err(StoreError::NotFound { .. })
    ));
    // Deleting twice.
    assert!(matches!(
        store.delete_group(&listed[0].value).await,
        Err(StoreError::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_instance_removes_everything_it_owns() -> Result<()> {
    let ctx = TestContext::spawn().await?;
    let store = ctx.store().await;
    let i = instance("doomed", Mode::Tracking, t0());
    store
        .create_instance(&i, &task_of(&i), Some(("tok-d", "fp")), t0())
        .await?;
    store.create_group(&group(&i, "reader", t0()), 20).await?;
    let kept = instance("kept", Mode::Tracking, t0());
    create(&store, &kept).await?;

    store.delete_instance(i.id()).await?;
    assert!(store.get_instance(i.id()).await?.is_none());
    assert!(store.get_task(i.id()).await?.is_none());
    assert!(store.list_groups(i.id()).await?.is_empty());
    assert!(store.get_instance(kept.id()).await?.is_some());

    // Nothing of it is left in the table, and its client token is free again.
    let scan = ctx
        .dynamodb()
        .await
        .scan()
        .table_name(ctx.dynamo_table())
        .send()
        .await?;
    let left: Vec<String> = scan
        .items()
        .iter()
        .filter_map(|it| it.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .filter(|pk| !pk.contains(kept.id().as_str()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let fresh = instance("doomed", Mode::Tracking, t0());
    let out = store
        .create_instance(&fresh, &task_of(&fresh), Some(("tok-d", "fp")), t0())
        .await?;
    assert!(matches!(out, CreateOutcome::Created(_)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_fence_checkpoints() {
    use ferry_domain::id::WorkerId;
    use ferry_store::{Checkpoint, CheckpointOutcome};
    let ctx = TestContext::spawn().await.unwrap();
    let store = ctx.store().await;
    let i = instance("leased", Mode::Tracking, t0());
    create(&store, &i).await.unwrap();
    let (a, b) = (WorkerId::generate(), WorkerId::generate());
    let ttl = Duration::seconds(30);

    let la = store
        .claim_lease(i.id(), &a, t0(), ttl)
        .await
        .unwrap()
        .expect("a free lease");
    assert_eq!(la.token, 1);
    assert!(
        store
            .claim_lease(i.id(), &b, t0() + Duration::seconds(10), ttl)
            .await
            .unwrap()
            .is_none(),
        "held by a"
    );
    let renewed = store
        .claim_lease(i.id(), &a, t0() + Duration::seconds(10), ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.token, 1, "renewal keeps the token");

    let cp = |token: u64, offset: u64| Checkpoint {
        position: format!("binlog.000001:{offset}").parse().unwrap(),
        source_time: t0(),
        last_key: None,
        offsets: None,
        token,
        written_at: t0(),
        source: None,
    };
    assert_eq!(
        store
            .write_checkpoint(i.id(), &cp(1, 100), 0)
            .await
            .unwrap(),
        CheckpointOutcome::Written
    );

    // a stalls; its lease expires; b takes over with a higher token and checkpoints.
    let lb = store
        .claim_lease(i.id(), &b, t0() + Duration::seconds(41), ttl)
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(lb.token, 2);
    assert_eq!(
        store
            .write_checkpoint(i.id(), &cp(2, 200), 0)
            .await
            .unwrap(),
        CheckpointOutcome::Written
    );
    // a wakes up and writes late: refused, b's checkpoint stands.
    assert_eq!(
        store
            .write_checkpoint(i.id(), &cp(1, 150), 0)
            .await
            .unwrap(),
        CheckpointOutcome::Fenced
    );
    assert_eq!(
        store
            .get_checkpoint(i.id())
            .await
            .unwrap()
            .unwrap()
            .position
            .offset(),
        200
    );
    // A checkpoint for an older configuration is refused too.
    assert_eq!(
        store
            .write_checkpoint(i.id(), &cp(2, 300), 7)
            .await
            .unwrap(),
        CheckpointOutcome::ConfigChanged
    );

    // Releasing keeps the token: the next holder's is higher still.
    store
        .release_lease(i.id(), &b, 2, t0() + Duration::seconds(42))
        .await
        .unwrap();
    let la2 = store
        .claim_lease(i.id(), &a, t0() + Duration::seconds(42), ttl)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(la2.token, 3);
}
