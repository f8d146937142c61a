from deploy.serve import main

raise SystemExit(main())
