"""What a run leaves on disk: run records, the output inventory, output ownership.

`store` reads and writes run records (the run root's layout is in
`model.layout`); `owner` tells who produced an output
folder; `inventory` lists and hashes outputs; `host` describes the machine.
May import `common`, `model` and `errors` only: the runner, the hooks and the
CLI all read records through here.
"""
