"""Reading and writing files that come from users: one image reader (:mod:`stdgen.io.images`) and
one way to claim and write an output path (:mod:`stdgen.io.outputs`)."""
