//! The seed's publisher: publish one `tasks.complete` event on the local daemon's broker.
//!
//! ```text
//! cargo run -p pilot-tokio --example publisher -- \
//!     tasks.complete '{"task_id":"abc123","status":"done"}'
//! ```

use pilot_tokio::Client;

fn socket() -> std::path::PathBuf {
    if let Some(s) = std::env::var_os("PILOT_SOCKET") {
        return s.into();
    }
    let home =
        std::env::var_os("PILOT_HOME").map_or_else(pilot_tokio::config::default_home, Into::into);
    home.join("pilot.sock")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "tasks.complete".to_owned());
    let payload = args
        .next()
        .unwrap_or_else(|| r#"{"task_id":"abc123","status":"done"}"#.to_owned());
    let client = Client::connect(socket()).await?;
    client.publish(&topic, payload.as_bytes()).await?;
    println!("published {} bytes on {topic}", payload.len());
    Ok(())
}
