"""The lab's HTML report: one self-contained file (inline SVG and CSS, no script, nothing
fetched) drawn from the runs' JSON (each run's `to_json()`, what `--json` prints).

- `page.py`: the document, one section per run (`render`), and what kind of run a JSON is;
- `stack.py`: the stack at a handler's entry, to scale;
- `tables.py`: the IDT as a 16x16 map, the GDT and TSS with their stack pointers;
- `charts.py`: the fatal path's timeline, the timer's tick intervals, the page walk, the matrix;
- `svg.py`: the drawing primitives.
"""
