from brainmri.cli import main

raise SystemExit(main())
