//! The `byol` command-line tool.

use byol::device;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "byol",
    version,
    about = "Self-supervised learning (BYOL and relatives) on any GPU through wgpu"
)]
struct Cli {
    /// Use the adapter whose name contains this text (case-insensitive), or whose backend is named
    /// so (vulkan, metal, dx12, gl); env BYOL_ADAPTER also works.
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Time each candidate kernel of a pass the first time a shape is met and keep the fastest
    /// (remembered in the tune cache: BYOL_TUNE_CACHE, else ~/.cache/byol-wgpu/tune.json), or use
    /// each pass's static default.
    #[arg(long, global = true, value_enum, default_value = "on")]
    tune: Tune,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Tune {
    On,
    Off,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu can reach and mark the one that would be used.
    Adapters,
    /// Open the chosen adapter and print its limits and the kernel variants it gets.
    Info,
    /// Train an encoder self-supervised (BYOL and relatives) with diagnostics and checkpoints.
    Train(Box<byol::cli::train::TrainArgs>),
    /// Fill the tune cache for a training configuration (the flags of `train`) and print the
    /// kernel chosen for each pass and shape, with the times measured.
    Tune(Box<byol::cli::train::TrainArgs>),
    /// Linear evaluation of a run's encoder, or of one in a safetensors file (or of a random one
    /// with --random).
    Eval(byol::cli::train::EvalArgs),
    /// Write a run's encoder (optionally heads, or the EMA target) as safetensors with
    /// torchvision's ResNet-18 names.
    Export(byol::cli::interop::ExportArgs),
    /// Write an encoder's embeddings of a dataset split as a float32 .npy (and its labels).
    Embed(byol::cli::interop::EmbedArgs),
    /// The seed's study: every variant of its table from one initialization, its table and figures.
    Study(byol::cli::study::StudyArgs),
    /// Datasets: info, fetch, show augmented pairs.
    Data {
        #[command(subcommand)]
        command: byol::cli::data::DataCommand,
    },
}

fn main() -> ExitCode {
    device::quiet_device_select_layer();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let dev = byol::cli::Device {
        adapter: cli.adapter.clone(),
        tune: match cli.tune {
            Tune::On => byol::TuneMode::On,
            Tune::Off => byol::TuneMode::Off,
        },
    };
    let given_in = |name: &str| {
        let command = Cli::command();
        match (
            matches.subcommand_matches(name),
            command.find_subcommand(name),
        ) {
            (Some(m), Some(c)) => given_flags(m, c),
            _ => Vec::new(),
        }
    };
    let result = match cli.command {
        Command::Adapters => adapters(cli.adapter.as_deref()),
        Command::Info => info(cli.adapter.as_deref()),
        Command::Train(args) => byol::cli::train::run(&args, &dev, &given_in("train")),
        Command::Tune(args) => byol::cli::tune::run(&args, &dev, &given_in("tune")),
        Command::Eval(args) => byol::cli::train::eval(&args, &dev),
        Command::Export(args) => byol::cli::interop::export(&args, &dev),
        Command::Embed(args) => byol::cli::interop::embed(&args, &dev),
        Command::Study(args) => byol::cli::study::run(&args, &dev),
        Command::Data { command } => byol::cli::data::run(command, &dev),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Not a failure: the state is saved; 130 is the shell's code for "stopped by Ctrl-C".
        Err(e @ byol::Error::Interrupted(_)) => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The flags of `command` (by field name) that the command line itself set, not their defaults.
fn given_flags(m: &clap::ArgMatches, command: &clap::Command) -> Vec<String> {
    command
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| m.value_source(id) == Some(ValueSource::CommandLine))
        .map(str::to_string)
        .collect()
}

fn adapters(filter: Option<&str>) -> byol::Result<()> {
    let filter = device::adapter_filter(filter);
    let (list, chosen) = device::list_adapters(filter.as_deref());
    if list.is_empty() {
        return Err(byol::Error::NoAdapter(format!(
            "wgpu found no adapter with compute shaders; {}",
            device::NO_ADAPTER_HELP
        )));
    }
    println!("  {:<40} {:<8} {:<14} driver", "name", "backend", "type");
    for (i, a) in list.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        println!(
            "{mark} {:<40} {:<8} {:<14} {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    match (chosen, filter) {
        (Some(_), _) => println!("(* = the adapter byol would use)"),
        (None, Some(f)) => {
            return Err(byol::Error::NoAdapter(format!(
                "no adapter name contains {f:?}"
            )));
        }
        (None, None) => {}
    }
    Ok(())
}

fn info(filter: Option<&str>) -> byol::Result<()> {
    let engine = byol::Engine::new(byol::EngineOptions {
        adapter: filter.map(str::to_owned),
        ..Default::default()
    })?;
    let gpu = engine.gpu();
    println!("adapter:            {}", engine.adapter_name());
    println!("device type:        {:?}", gpu.info.device_type);
    println!(
        "driver:             {} {}",
        gpu.info.driver, gpu.info.driver_info
    );
    println!(
        "max buffer:         {} MiB",
        gpu.limits.max_buffer_size >> 20
    );
    println!("max binding:        {} MiB", gpu.max_binding_bytes() >> 20);
    println!(
        "workgroup storage:  {} KiB",
        gpu.limits.max_compute_workgroup_storage_size >> 10
    );
    println!(
        "timestamp queries:  {}",
        gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    );
    // The shader files of README's kernel table.
    let matmul = match engine.matmul_variant() {
        byol::MatmulVariant::Tiled => "matmul_tiled.wgsl",
        _ => "matmul_vec4.wgsl (four block and workgroup shapes, chosen per product by measurement; matmul_blocked.wgsl where vec4 loads do not fit; matmul_texture.wgsl, operands packed into textures, a candidate where the adapter has them)",
    };
    println!("matmul kernel:      {matmul}");
    println!(
        "operand textures:   {}",
        if engine.has_operand_textures() {
            "yes (rgba32float storage writes: the texture matmul is a candidate)"
        } else {
            "no (the texture matmul does not run here)"
        }
    );
    println!(
        "conv2d kernels:     direct {}.wgsl or unfolded conv2d_unfold.wgsl + matmul, per pass and shape by measurement (`byol tune`)",
        byol::ops::conv2d::shader(&engine)
    );
    match byol::engine::default_cache_file() {
        Some(p) => println!("tune cache:         {}", p.display()),
        None => println!("tune cache:         none (set BYOL_TUNE_CACHE or HOME)"),
    }
    Ok(())
}
