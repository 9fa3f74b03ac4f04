{
  "targets": [
    {
      "target_name": "nlfit",
      "sources": [
        "native/binding/addon.cpp",
        "native/kernel/batch.cpp",
        "native/kernel/columns.cpp",
        "native/kernel/lm.cpp",
        "native/kernel/loss.cpp",
        "native/kernel/program.cpp",
        "native/kernel/rowblocks.cpp",
        "native/kernel/tsqr.cpp",
        "native/kernel/tsqr_narrow.cpp"
      ],
      "include_dirs": ["<!(node native/build-flags.cjs napi-include)"],
      "defines": ["NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "<!@(node native/build-flags.cjs cflags)"],
      "libraries": ["-lm"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["<!@(node native/build-flags.cjs cflags)"]
      }
    }
  ],
  "conditions": [
    # The optional MPI transport (native/mpi/transport.cpp), a second addon so
    # that nlfit.node never links libmpi (worker threads load nlfit.node).
    # Only when native/build-flags.cjs finds MPI (env NLFIT_MPI: 0 = never,
    # 1 = required, which fails the build when MPI is missing). The same
    # flags as nlfit, plus MPI's; CMakeLists.txt builds the same target.
    ["OS!='win' and '<!(node native/build-flags.cjs mpi-found)'=='1'", {
      "targets": [
        {
          "target_name": "nlfit_mpi",
          "sources": ["native/mpi/transport.cpp"],
          "include_dirs": ["<!(node native/build-flags.cjs napi-include)"],
          "defines": ["NAPI_VERSION=9", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
          "cflags_cc": ["-std=c++17", "<!@(node native/build-flags.cjs cflags)", "<!@(node native/build-flags.cjs mpi-cflags)"],
          "libraries": ["<!@(node native/build-flags.cjs mpi-libs)", "-ldl"],
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "OTHER_CPLUSPLUSFLAGS": ["<!@(node native/build-flags.cjs cflags)", "<!@(node native/build-flags.cjs mpi-cflags)"]
          }
        }
      ]
    }]
  ]
}
