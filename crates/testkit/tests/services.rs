//! Proves the test services are reached and that isolation holds.

#[tokio::test]
async fn postgres_schema_is_isolated_and_dropped() {
    let Some(a) = steadfast_testkit::postgres().await else {
        return;
    };
    let Some(b) = steadfast_testkit::postgres().await else {
        return;
    };
    assert_ne!(a.name(), b.name());
    sqlx::query("CREATE TABLE probe (id int)")
        .execute(a.pool())
        .await
        .unwrap();
    // The same unqualified name in the other schema is a different table.
    sqlx::query("CREATE TABLE probe (id int)")
        .execute(b.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO probe VALUES (1)")
        .execute(a.pool())
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM probe")
        .fetch_one(b.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);

    let name = a.name().to_owned();
    let checker = sqlx::PgPool::connect(&steadfast_testkit::database_url())
        .await
        .unwrap();
    drop(a);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&name)
    .fetch_one(&checker)
    .await
    .unwrap();
    assert_eq!(left, 0, "schema {name} should be dropped");
}

#[tokio::test]
async fn redis_prefix_is_cleaned_up() {
    let Some(r) = steadfast_testkit::redis().await else {
        return;
    };
    let mut conn = r.conn();
    let key = r.key("probe");
    assert!(key.starts_with(r.prefix()));
    redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, "1");
    drop(r);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}
