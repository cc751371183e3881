//! What `clasp server` and `clasp relay` run inside the router through its typed door: the
//! config file's bridges and mappings (the same code as `clasp bridge`, on in-process links)
//! and a rules file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clasp_bridge::RouterLink;
use clasp_bridge::host::{self, BridgeSpec, Hosted};
use clasp_bridge::mapper::{Mapper, MapperStats};
use clasp_bridge::rules::RulesStatus;
use clasp_mapping::{Engine, MappingSpec, describe};
use clasp_router::server::Server;
use tokio_util::sync::CancellationToken;

/// A rules file to run, and the token its session joins with.
#[derive(Debug)]
pub(crate) struct RulesSpec {
    pub(crate) path: PathBuf,
    pub(crate) token: Option<String>,
}

/// Bridges and mappings from `clasp server` / `clasp relay`'s config file, run inside the
/// router through its typed door (the same code as `clasp bridge`, on in-process links).
#[derive(Debug)]
pub(crate) struct InProcess {
    engine: Option<Engine>,
    specs: Vec<BridgeSpec>,
    token: Option<String>,
    rules: Option<RulesSpec>,
}

impl InProcess {
    /// Checks the tables of `path`; `None` when there are none.
    pub(crate) fn new(
        mappings: Vec<MappingSpec>,
        specs: Vec<BridgeSpec>,
        token: Option<String>,
        path: &std::path::Path,
        rules: Option<RulesSpec>,
    ) -> anyhow::Result<Option<InProcess>> {
        if let Some(r) = &rules {
            // Refused at start, with the line and column of the problem.
            clasp_bridge::rules::load(&r.path)?;
        }
        for s in &specs {
            s.check()
                .with_context(|| format!("{}: bridge `{}`", path.display(), s.label()))?;
        }
        let engine = if mappings.is_empty() {
            None
        } else {
            Some(
                Engine::new(mappings)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), describe(&e)))?,
            )
        };
        if engine.is_none() && specs.is_empty() && rules.is_none() {
            return Ok(None);
        }
        Ok(Some(InProcess {
            engine,
            specs,
            token,
            rules,
        }))
    }

    /// Starts them on `server` (until `stop`), and adds their counters to `/metrics`.
    pub(crate) async fn start(
        self,
        server: Server,
        stop: CancellationToken,
    ) -> anyhow::Result<Server> {
        let handle = server.handle();
        let join =
            |what: &str| format!("the in-process {what} cannot join the router (set bridge_token)");
        let mut hosted = Vec::new();
        for spec in self.specs {
            let label = spec.label();
            let link =
                RouterLink::local_named(&handle, self.token.as_deref(), &format!("bridge:{label}"))
                    .with_context(|| join(&format!("bridge `{label}`")))?;
            let h = host::start(spec, link, stop.clone())
                .await
                .with_context(|| format!("bridge `{label}`"))?;
            tracing::info!(bridge = %label, "bridge running in-process");
            hosted.push(h);
        }
        if let Some(engine) = self.engine {
            let rules = engine.len();
            let link = RouterLink::local_named(&handle, self.token.as_deref(), "mappings")
                .with_context(|| join("mappings"))?;
            let mapper = Mapper::start(link, engine).await?;
            let stats = Arc::new(MapperStats::default());
            let run = mapper.run(stats.clone(), stop.clone());
            tokio::spawn(async move {
                if let Err(e) = run.await {
                    tracing::error!(error = %e, "the in-process mappings stopped");
                }
            });
            tracing::info!(rules, "mappings running in-process");
            hosted.push(Hosted {
                label: "mappings".into(),
                counters: stats,
            });
        }
        let rules_status = match self.rules {
            Some(r) => {
                let token = r.token.as_deref().or(self.token.as_deref());
                let link = RouterLink::local_named(&handle, token, "rules")
                    .context("the rules cannot join the router (set --rules-token)")?;
                let status = Arc::new(RulesStatus::default());
                let run = clasp_bridge::rules::run(link, r.path, status.clone(), stop);
                tokio::spawn(async move {
                    match run.await {
                        Ok(()) => tracing::info!("the rules stopped"),
                        Err(e) => tracing::error!(error = %e, "the rules stopped"),
                    }
                });
                Some(status)
            }
            None => None,
        };
        Ok(server.with_metrics(move |o| {
            host::write_metrics(o, &hosted);
            if let Some(r) = &rules_status {
                r.write_metrics(o);
            }
        }))
    }
}
