//! `weir bench`: the arguments and the measuring live in `weir-bench`;
//! this prints its report, as Markdown tables or one JSON object.

pub(crate) async fn run(args: weir_bench::BenchArgs) -> anyhow::Result<()> {
    let json = args.json();
    let report = weir_bench::run(args).await?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
