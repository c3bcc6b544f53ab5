"""The emulator's web view: runs table, run pages with server-side SVG charts, compare view.

Everything is served by the emulator itself (no network in the browser, no JavaScript library):
`queries` reads what the pages show, `charts` draws downsampled series as SVG with axes, and
`static/` holds the small hand-written script (hover read-out, log toggle, live polling).
"""
