"""What the tests share (fixtures live in tests/conftest.py, tests in unit/, integration/ and e2e/).

- ``harness``: polling with a deadline (``wait_for``), test settings, the API in a thread, worker processes.
- ``fal_queue``: fal's queue protocol from the caller's side: submit, status, wait, result, run, download.
- ``images``: small images made in memory, PNG bytes and data URIs.
- ``servers``: another Darkroom API with its own settings, and a webhook receiver.
- ``fileserver``: a loopback HTTP(S) server of files, redirects, slow and oversized bodies.
- ``fault_plugin``: the ``darkroom-test/faults`` app that crashes, stalls or fails on request.
- ``diffusion_models``: tiny random-weight diffusion pipelines saved for the real loader.
"""
