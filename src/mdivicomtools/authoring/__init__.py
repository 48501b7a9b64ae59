"""For plugin authors: conformance checks, scaffolds and sample data.

`check` (`mdivicom plugins check`: a plugin run in a sandbox and judged
against the contract), `scaffold` (`mdivicom plugins new`), `sampledata` (a
small openSIDS dataset made with the standard library). The pytest fixtures
built on them are the public module `mdivicomtools.testing`. May import the
runner and everything below it.
"""
