//! Shared fixtures for integration tests: where the real services live (as
//! started by `tests/services/up`) and clients for them. Addresses come from
//! the environment with the scripts' defaults, so a test never guesses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

pub fn kafka_bootstrap() -> String {
    env_or("WHARF_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
}

/// libpq-style connection string for the `shop` database as the `cdc` role.
pub fn postgres_url() -> String {
    env_or(
        "WHARF_PG_URL",
        "host=127.0.0.1 port=5432 user=cdc password=cdc dbname=shop",
    )
}

/// Connection string for the superuser (publications FOR ALL TABLES, slot cleanup).
pub fn postgres_admin_url() -> String {
    env_or(
        "WHARF_PG_ADMIN_URL",
        "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=shop",
    )
}

pub fn s3_endpoint() -> String {
    env_or("WHARF_S3_ENDPOINT", "http://127.0.0.1:9000")
}

pub fn s3_credentials() -> (String, String) {
    (
        env_or("WHARF_S3_ACCESS_KEY", "wharf"),
        env_or("WHARF_S3_SECRET_KEY", "wharf-secret"),
    )
}

pub fn opensearch_url() -> String {
    env_or("WHARF_ES_URL", "http://127.0.0.1:9200")
}

/// A name no other test run uses, for topics, tables, buckets and indices.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Connects to Postgres and drives the connection on a background task.
pub async fn postgres(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

/// An S3 client for the local server: static credentials, path-style addressing.
pub fn s3_client() -> aws_sdk_s3::Client {
    let (access, secret) = s3_credentials();
    let creds = aws_credential_types::Credentials::new(access, secret, None, None, "wharf-tests");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(s3_endpoint())
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub fn opensearch_client() -> anyhow::Result<elasticsearch::Elasticsearch> {
    let url = elasticsearch::http::Url::parse(&opensearch_url())?;
    let pool = elasticsearch::http::transport::SingleNodeConnectionPool::new(url);
    let transport = elasticsearch::http::transport::TransportBuilder::new(pool)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok(elasticsearch::Elasticsearch::new(transport))
}
