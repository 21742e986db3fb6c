#![allow(clippy::unwrap_used, clippy::expect_used)] // setup of a benchmark: a failure should stop it loudly

//! What an access check costs with many resource grants: a SQLite file (WAL, as the
//! broker runs it) holding 100,000 grants (90,000 to 1,000 users directly, 10,000 to
//! 100 managed groups, each user in 5 groups), against the cheapest store read there
//! is, a user by primary key, measured in the same run.
//!
//! - `get_user`: the baseline;
//! - `user_resource_roles`: the store's lookup of one user's roles on one resource;
//! - `decide_allowed` / `decide_denied`: the whole decision `/access/v1/check` makes
//!   (the user's status, their global roles, then their roles on the resource);
//! - `list_user_resources_25`: one page of a user's resources of a type.
//!
//! Read the ratios against `get_user`: the lookups must stay index lookups, so they
//! may not grow with the number of grants.

use broker::identity::resources::{Asker, Decision, decide};
use broker::roles::{Permission, RolePolicy};
use broker::store::{
    GroupRecord, Holder, ResourceGrantRecord, ResourceRef, SharedStore, SqliteStore, UserRecord,
    UserStatus,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

const USERS: usize = 1_000;
const GROUPS: usize = 100;
const DIRECT_PER_USER: usize = 90;
const PER_GROUP: usize = 100;
const LISTS: usize = 50_000;

fn user(i: usize) -> UserRecord {
    UserRecord {
        id: format!("u{i:04}"),
        username: Some(format!("user{i}")),
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        groups: Vec::new(),
        status: UserStatus::Active,
        password_hash: None,
        created_at: 1,
        updated_at: 1,
        last_login_at: None,
        revision: 1,
    }
}

fn list(n: usize) -> ResourceRef {
    ResourceRef {
        resource_type: "list".into(),
        id: n.to_string(),
    }
}

fn grant(resource: ResourceRef, holder: Holder, role: &str) -> ResourceGrantRecord {
    ResourceGrantRecord {
        resource,
        holder,
        role: role.into(),
        granted_at: 1,
        granted_by: "bench".into(),
    }
}

fn policy() -> RolePolicy {
    let mut permissions = BTreeMap::new();
    permissions.insert(
        "list-viewer".to_string(),
        vec![Permission::parse("lists:read").unwrap()],
    );
    permissions.insert(
        "list-editor".to_string(),
        vec![
            Permission::parse("lists:read").unwrap(),
            Permission::parse("lists:write").unwrap(),
        ],
    );
    RolePolicy {
        admin_role: None,
        default_roles: Vec::new(),
        permissions,
        rules: Vec::new(),
        email_trusted: Default::default(),
    }
}

/// A cheap spread of list ids so that grants do not cluster by user.
fn spread(i: usize, j: usize) -> usize {
    (i * 7_919 + j * 104_729) % LISTS
}

async fn seed(store: &SharedStore) {
    for i in 0..USERS {
        store.create_user(&user(i)).await.unwrap();
    }
    for g in 0..GROUPS {
        let id = format!("g{g:03}");
        store
            .create_group(&GroupRecord {
                id: id.clone(),
                name: format!("team-{g}"),
                description: None,
                created_at: 1,
                updated_at: 1,
                revision: 1,
            })
            .await
            .unwrap();
        for j in 0..PER_GROUP {
            let g_grant = grant(
                list(spread(g + USERS, j)),
                Holder::Group(id.clone()),
                "list-editor",
            );
            store.grant_resource_role(&g_grant).await.unwrap();
        }
    }
    for i in 0..USERS {
        let uid = format!("u{i:04}");
        for k in 0..5 {
            let group = format!("g{:03}", (i + k * 17) % GROUPS);
            store.add_member(&group, &uid, 1).await.unwrap();
        }
        for j in 0..DIRECT_PER_USER {
            let u_grant = grant(list(spread(i, j)), Holder::User(uid.clone()), "list-viewer");
            store.grant_resource_role(&u_grant).await.unwrap();
        }
    }
}

fn access_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = rt.block_on(async {
        let store: SharedStore = Arc::new(
            SqliteStore::open(&dir.path().join("bench.db"))
                .await
                .unwrap(),
        );
        seed(&store).await;
        store
    });
    let policy = policy();
    let held = list(spread(42, 3));
    let asker = Asker {
        user_id: "u0042",
        client_id: None,
        provider_id: Some("local"),
    };
    let allowed = rt.block_on(decide(&store, &policy, asker, "lists:read", &held));
    assert!(
        matches!(allowed, Ok(Decision::ResourceRole(_))),
        "{allowed:?}"
    );

    let mut group = c.benchmark_group("access_check_100k_grants");
    group.bench_function("get_user", |b| {
        b.iter(|| rt.block_on(store.get_user(black_box("u0042"))).unwrap())
    });
    group.bench_function("user_resource_roles", |b| {
        b.iter(|| {
            rt.block_on(store.user_resource_roles(black_box("u0042"), &held))
                .unwrap()
        })
    });
    group.bench_function("decide_allowed", |b| {
        b.iter(|| {
            rt.block_on(decide(
                &store,
                &policy,
                asker,
                "lists:read",
                black_box(&held),
            ))
            .unwrap()
        })
    });
    let not_held = list(LISTS + 1);
    group.bench_function("decide_denied", |b| {
        b.iter(|| {
            rt.block_on(decide(
                &store,
                &policy,
                asker,
                "lists:read",
                black_box(&not_held),
            ))
            .unwrap()
        })
    });
    group.bench_function("list_user_resources_25", |b| {
        b.iter(|| {
            rt.block_on(store.list_user_resources(black_box("u0042"), "list", None, 25))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, access_check);
criterion_main!(benches);
