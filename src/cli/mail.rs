//! `vestibule mail queue`: what waits in the spool (read-only; safe while the daemon runs).

use crate::config::{self, Location};

pub fn queue(location: Location) -> i32 {
    let cfg = match config::load(&location) {
        Ok(c) => c,
        Err(diags) => {
            eprintln!("{diags}");
            return 1;
        }
    };
    let dir = cfg.state_dir.join("mail/queue");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        println!("(no mail queue at {})", dir.display());
        return 0;
    };
    let mut rows: Vec<serde_json::Value> = rd
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "env"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    rows.sort_by_key(|v| v["created"].as_u64().unwrap_or(0));
    let now = crate::files::unix_now() as u64;
    println!(
        "{:<28} {:>8}  {:<32} {:<32} {:>8}  LAST REPLY",
        "ID", "AGE", "SENDER", "RECIPIENT", "ATTEMPTS"
    );
    for v in &rows {
        let age = now.saturating_sub(v["created"].as_u64().unwrap_or(now));
        let age = if age >= 3600 {
            format!("{}h", age / 3600)
        } else {
            format!("{}m", age / 60)
        };
        let sender = v["sender"].as_str().filter(|s| !s.is_empty()).unwrap_or("<>");
        for r in v["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["state"] == "pending")
        {
            println!(
                "{:<28} {:>8}  {:<32} {:<32} {:>8}  {}",
                v["id"].as_str().unwrap_or("?"),
                age,
                sender,
                r["address"].as_str().unwrap_or("?"),
                r["attempts"].as_u64().unwrap_or(0),
                r["last_reply"].as_str().unwrap_or("-")
            );
        }
    }
    println!("{} message(s) queued", rows.len());
    0
}
