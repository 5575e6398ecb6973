from downloader.cli import main

raise SystemExit(main())
