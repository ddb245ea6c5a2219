"""`progvc eval`: rate-distortion evaluation of ProGVC against x264, x265 and AV1 (see DESIGN.md §5).

Modules: `bdrate` (Bjøntegaard deltas), `refcodecs` (reference encoders through PyAV), `runner`
(sweeps, caching, metrics per point), `report` (results.json, summary.md, RD plots), `cli`.
"""
