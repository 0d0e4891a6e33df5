//! Finds the system DPDK with pkg-config, generates bindings with bindgen and compiles the C
//! shim (`shim/`) with the same flags. Does nothing unless the `dpdk` feature is on.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::env;
    use std::path::PathBuf;

    const INSTALL_HINT: &str =
        "on Debian/Ubuntu: apt-get install libdpdk-dev pkg-config libclang-dev";

    /// Functions bound from DPDK's shared libraries. Only real exported symbols belong here:
    /// DPDK's `static inline` functions (the burst calls, mbuf alloc/free, …) have no symbol
    /// to link against and go through the shim instead.
    const FUNCTIONS: &[&str] = &[
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_eal_remote_launch",
        "rte_eal_wait_lcore",
        "rte_eal_mp_wait_lcore",
        "rte_strerror",
        "rte_socket_id",
        "rte_lcore_count",
        "rte_get_main_lcore",
        "rte_get_next_lcore",
        "rte_lcore_is_enabled",
        "rte_lcore_to_socket_id",
        "rte_thread_register",
        "rte_thread_unregister",
        "rte_dev_probe",
        "rte_eth_dev_count_avail",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_get_name_by_port",
        "rte_eth_dev_is_valid_port",
        "rte_eth_dev_socket_id",
        "rte_eth_dev_info_get",
        "rte_eth_dev_configure",
        "rte_eth_dev_adjust_nb_rx_tx_desc",
        "rte_eth_rx_queue_setup",
        "rte_eth_tx_queue_setup",
        "rte_eth_dev_start",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_promiscuous_enable",
        "rte_eth_promiscuous_get",
        "rte_eth_macaddr_get",
        "rte_eth_link_get_nowait",
        "rte_eth_stats_get",
        "rte_eth_stats_reset",
        "rte_eth_dev_rss_hash_conf_get",
        "rte_pktmbuf_pool_create",
        "rte_pktmbuf_free_bulk",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_mempool_in_use_count",
        "rampart_.*",
    ];

    const TYPES: &[&str] = &[
        "rte_mbuf",
        "rte_mempool",
        "rte_ether_addr",
        "rte_eth_conf",
        "rte_eth_rxconf",
        "rte_eth_txconf",
        "rte_eth_rss_conf",
        "rte_eth_dev_info",
        "rte_eth_stats",
        "rte_eth_link",
        "rte_eth_rx_mq_mode",
        "rte_eth_tx_mq_mode",
        "lcore_function_t",
    ];

    const VARS: &[&str] = &[
        "rampart_.*",
        "RTE_MAX_ETHPORTS",
        "RTE_MAX_LCORE",
        "RTE_ETHER_ADDR_LEN",
        "RTE_PKTMBUF_HEADROOM",
        "RTE_MBUF_DEFAULT_BUF_SIZE",
        "RTE_MBUF_DEFAULT_DATAROOM",
        "RTE_ETH_NAME_MAX_LEN",
        "RTE_ETH_LINK_UP",
        "RTE_ETH_LINK_DOWN",
        "SOCKET_ID_ANY",
        "LCORE_ID_ANY",
    ];

    pub fn build() {
        let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
        let out = PathBuf::from(env::var("OUT_DIR").unwrap());
        for f in ["wrapper.h", "shim/shim.h", "shim/shim.c"] {
            println!("cargo:rerun-if-changed={}", manifest.join(f).display());
        }
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

        // Shared linking: pkg-config emits `-lrte_*`, and EAL dlopens the PMDs (net_ring,
        // net_null, …) from its driver directory at init, so nothing needs --whole-archive.
        pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| {
                panic!(
                    "\n\nrampart-sys: DPDK (pkg-config package `libdpdk`, 22.11 or later) was not found.\n\
                     Install it ({INSTALL_HINT}), or build without the `dpdk` feature \
                     (`--no-default-features` on rampart-dataplane).\n\npkg-config said: {e}\n"
                )
            });

        // pkg-config's cflags carry `-include rte_config.h -march=corei7` and the include
        // directories: the shim and bindgen's clang need all of them.
        let cflags = cflags();

        let mut shim = cc::Build::new();
        shim.file(manifest.join("shim/shim.c"))
            .opt_level(3)
            .warnings(true);
        for flag in &cflags {
            shim.flag(flag);
        }
        shim.compile("rampart_shim");

        if let Err(e) = clang_sys::load() {
            panic!(
                "\n\nrampart-sys: bindgen needs libclang and could not load it ({e}).\n\
                 Install it ({INSTALL_HINT}), or set LIBCLANG_PATH to the directory holding libclang.so.\n"
            );
        }

        let mut builder = bindgen::Builder::default()
            .header(manifest.join("wrapper.h").to_string_lossy())
            .clang_args(&cflags)
            .clang_arg(format!("-I{}", manifest.display()))
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            // C enums as modules of integer constants (`rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS`):
            // a Rust enum would be undefined behaviour the day DPDK hands back a value the
            // bindings do not know.
            .default_enum_style(bindgen::EnumVariation::ModuleConsts)
            .derive_default(true)
            .layout_tests(true)
            .generate_comments(false)
            .allowlist_recursively(true);
        for f in FUNCTIONS {
            builder = builder.allowlist_function(f);
        }
        for t in TYPES {
            builder = builder.allowlist_type(t);
        }
        for v in VARS {
            builder = builder.allowlist_var(v);
        }
        builder
            .generate()
            .expect("rampart-sys: bindgen failed on the DPDK headers (see the clang errors above)")
            .write_to_file(out.join("bindings.rs"))
            .expect("rampart-sys: cannot write bindings.rs");
    }

    /// `pkg-config --cflags libdpdk`, verbatim and in order. The pkg-config crate keeps only
    /// include paths and defines; the shim also needs `-include rte_config.h` (two
    /// arguments, which must stay a pair) and `-march=corei7`.
    fn cflags() -> Vec<String> {
        let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
        let out = std::process::Command::new(pkg_config)
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("rampart-sys: cannot run pkg-config");
        assert!(
            out.status.success(),
            "rampart-sys: `pkg-config --cflags libdpdk` failed"
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}
