{
  "targets": [
    {
      "target_name": "rebound_fileops",
      "sources": ["native/fileops.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
