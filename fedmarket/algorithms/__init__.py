"""The market's algorithms from the papers, below everything that uses them: outlier rules,
aggregators, contribution metrics and the linear algebra they share. numpy only (no Prefect, no
chain, no store), so one definition serves the float rule, the circuit that proves it and the
Prefect task that runs it. Each kind is a set of small modules behind one signature, registered
by name (`registry.Registry`) and selected in the task spec."""
