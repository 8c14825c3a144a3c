from tradepilot.cli import main

raise SystemExit(main())
