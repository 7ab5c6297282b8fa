"""napari plugin (optional extra ``emseg[napari]``): Segment, Annotate, Fine-tune and Measure
docks plus a synthetic sample volume. Every widget calls the same library functions as the CLI;
long work runs in napari ``thread_worker``s so the viewer stays responsive."""
