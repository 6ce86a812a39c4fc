-- GET of the URL given on wrk's command line (the JWKS, the bare route).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
