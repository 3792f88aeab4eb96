"""Helpers of the bridges that let scripts written for other trackers log to labtrack.

`labtrack.wandb` (public) stands on `wandb_media` (wandb's value objects turned into what
`Run.log_image`, `log_table`, ... take) and `wandb_run` (the run object, its config and
summary, step bookkeeping, define_metric and watch). They are on the training side: they
call `Run`'s methods and never write run files themselves.
"""
