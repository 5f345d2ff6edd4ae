"""samrepro.engine — training loop, checkpoint/resume, schedules, evaluation (docs/ARCHITECTURE.md Part C).

Modules (imported on demand, so `import samrepro.engine` stays free of torch):
  config        load/validate run.yaml, config hashes
  trainer       train(cfg, out_dir, stop) -> metrics; resume; SIGTERM/NaN handling; DDP
  schedule      cosine / multistep learning rate with warmup (pure function of epoch and step)
  checkpoint    atomic writes, RNG capture/restore
  loader        reproducible, resumable epoch batches (in-process or DataLoader workers)
  evaluation    top-1/top-5, face train accuracy, verification of benchmarks, mechanism probes
  verification  insightface's 10-fold verification protocol with flip test
  sharpness     top Hessian eigenvalue by power iteration on Hessian-vector products
  distributed   torchrun/DDP glue and the SAM perturbation's gradient synchronisation switch
  records       history.csv, metrics.json provenance, progress output
  cli_train, cli_evaluate   the `samrepro train` / `samrepro evaluate` subcommands
"""
