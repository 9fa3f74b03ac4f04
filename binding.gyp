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
  ]
}
