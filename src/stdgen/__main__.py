from stdgen.cli import main

raise SystemExit(main())
