"""Commands that span stages (the top layer, beside the CLI): ``stdgen render-demo``
(:mod:`~stdgen.commands.render_demo`) and ``stdgen layers-demo`` (:mod:`~stdgen.commands.layers_demo`),
each with its ``*_cli`` module that registers it."""
