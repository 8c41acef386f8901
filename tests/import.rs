//! `iocwatch import`: spreadsheet → owner file → `check-config` passes → the agent probes
//! it; bad rows named by row and column with nothing written; XLSX codes that lost their
//! leading zero; the templates shipped in config/.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{write, TestAgent};

const MAIN: &str = "defaults: {interval: 1s, timeout: 800ms}\n\
include: [\"conf.d/*.yaml\"]\n\
areas:\n\
\x20 - code: \"15\"\n\
\x20   name: Tỉnh Lào Cai\n\
\x20   children:\n\
\x20     - {code: \"02947\", name: Xã Bảo Yên}\n\
\x20     - {code: \"02953\", name: Xã Nghĩa Đô}\n\
systems:\n\
\x20 - {id: motcua, name: Một cửa điện tử}\n\
targets:\n\
\x20 - {id: gw, area: \"15\", address: 127.0.0.1, checks: [icmp: {count: 1}]}\n";

fn iocwatch(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iocwatch"))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("run iocwatch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sheet_becomes_an_owner_file_the_agent_probes() {
    let web = common::http_server("<h1>Một cửa</h1>").await;
    let dir = tempfile::tempdir().expect("dir");
    let main = dir.path().join("iocwatch.yaml");
    write(&main, MAIN);
    std::fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
    // Headings without tone marks, an area by its name without them, Excel's BOM.
    let sheet = dir.path().join("vnpt.csv");
    std::fs::write(
        &sheet,
        format!(
            "\u{feff}Dia ban,Ma,Ten,Dia chi,Kiem tra,Nhan,Phu thuoc,He thong\n\
             Xa Bao Yen,ubnd-bao-yen,UBND xã Bảo Yên,127.0.0.1,icmp; tcp:{port},role=ubnd,gw,\n\
             02953,motcua-nghia-do,\"Một cửa, Nghĩa Đô\",http://{web}/,,,,motcua\n\
             ,,,,,,,\n",
            port = web.port()
        ),
    )
    .expect("sheet");
    let out = dir.path().join("conf.d/vnpt.yaml");
    let sheet_arg = sheet.to_string_lossy().into_owned();
    let out_arg = out.to_string_lossy().into_owned();
    let import = || {
        let made = iocwatch(
            &[
                "import",
                &sheet_arg,
                "--owner",
                "VNPT Lào Cai",
                "-o",
                &out_arg,
            ],
            &main,
        );
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    };
    import();
    let yaml = std::fs::read_to_string(&out).expect("written");
    assert!(
        yaml.contains("area: \"02947\""),
        "name matched to code: {yaml}"
    );
    assert!(yaml.contains("owner: \"VNPT Lào Cai\""), "{yaml}");
    let checked = iocwatch(&["check-config"], &main);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("VNPT Lào Cai: 2 targets, 3 checks"));

    // Importing the same sheet again over the file it wrote is not a duplicate.
    import();

    let files = [
        ("iocwatch.yaml", MAIN.to_owned()),
        ("conf.d/vnpt.yaml", yaml.clone()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let agent = TestAgent::start(&files).await;
    let m = agent
        .wait_for(
            Duration::from_secs(20),
            "the imported targets answering",
            |m| {
                [("ubnd-bao-yen", 2), ("motcua-nghia-do", 1)]
                    .iter()
                    .all(|(t, checks)| {
                        let values = m.values("iocwatch_probe_success", &[("target", t)]);
                        values.len() == *checks && values.iter().all(|v| *v == 1.0)
                    })
            },
        )
        .await;
    assert!(m.has(
        "iocwatch_target_info",
        &[
            ("target", "ubnd-bao-yen"),
            ("owner", "VNPT Lào Cai"),
            ("role", "ubnd")
        ]
    ));
    agent.stop().await;
}

#[test]
fn bad_rows_are_named_by_row_and_column_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("dir");
    let main = dir.path().join("iocwatch.yaml");
    write(&main, MAIN);
    let sheet = dir.path().join("bad.csv");
    std::fs::write(
        &sheet,
        "Địa bàn,Mã,Tên,Địa chỉ,Kiểm tra\n\
         Xã Không Có,a1,A,127.0.0.1,icmp\n\
         Xã Bảo Yên,a2,B,127.0.0.1,tcp:abc\n\
         Xã Bảo Yên,a3,C,127.0.0.256,icmp\n\
         Xã Nghĩa Đô,gw,D,127.0.0.1,icmp\n\
         Xã Nghĩa Đô,a5,E,127.0.0.1,icmp\n",
    )
    .expect("sheet");
    let out = dir.path().join("conf.d/bad.yaml");
    let made = iocwatch(
        &[
            "import",
            &sheet.to_string_lossy(),
            "-o",
            &out.to_string_lossy(),
        ],
        &main,
    );
    let errors = String::from_utf8_lossy(&made.stderr);
    assert_eq!(made.status.code(), Some(64), "{errors}");
    assert!(!out.exists(), "nothing written");
    assert!(
        errors.contains("row 2, column A (Địa bàn): no area has the code or name \"Xã Không Có\""),
        "{errors}"
    );
    assert!(
        errors.contains("row 3, column E (Kiểm tra): \"tcp:abc\": \"abc\" is not a port"),
        "{errors}"
    );
    // The row-level checks passed these two; the loader found them, and the row still.
    let row4 = errors
        .lines()
        .find(|l| l.contains("row 4"))
        .unwrap_or_default();
    assert!(
        row4.contains("column D (Địa chỉ)") && row4.contains("127.0.0.256"),
        "{errors}"
    );
    let row5 = errors
        .lines()
        .find(|l| l.contains("row 5"))
        .unwrap_or_default();
    assert!(
        row5.contains("column B (Mã)") && row5.contains("gw"),
        "{errors}"
    );
    assert!(
        !errors.contains("row 6"),
        "the good row is not blamed: {errors}"
    );
}

#[test]
fn an_xlsx_sheet_with_codes_that_lost_their_zero_imports() {
    let dir = tempfile::tempdir().expect("dir");
    let main = dir.path().join("iocwatch.yaml");
    write(&main, MAIN);
    let sheet = dir.path().join("sites.xlsx");
    let mut book = rust_xlsxwriter::Workbook::new();
    let ws = book.add_worksheet();
    for (c, heading) in ["area", "id", "address", "checks"].iter().enumerate() {
        ws.write_string(0, c as u16, *heading).expect("heading");
    }
    // Excel turns 02947 into the number 2947.
    ws.write_number(1, 0, 2947.0).expect("code");
    ws.write_string(1, 1, "ubnd-bao-yen").expect("id");
    ws.write_string(1, 2, "127.0.0.1").expect("address");
    ws.write_string(1, 3, "icmp").expect("checks");
    book.save(&sheet).expect("save");
    let made = iocwatch(&["import", &sheet.to_string_lossy()], &main);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let yaml = String::from_utf8_lossy(&made.stdout);
    assert!(
        yaml.contains(
            "{id: \"ubnd-bao-yen\", area: \"02947\", address: \"127.0.0.1\", checks: [icmp: {}]}"
        ),
        "{yaml}"
    );
}

#[test]
fn the_shipped_templates_import_into_the_default_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = root.join("config/iocwatch.yaml");
    let mut made = Vec::new();
    for template in ["config/import-template.csv", "config/import-template.xlsx"] {
        let out = iocwatch(&["import", &root.join(template).to_string_lossy()], &main);
        assert!(
            out.status.success(),
            "{template}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        made.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_eq!(
        made[0], made[1],
        "the CSV and the XLSX template say the same"
    );
    assert!(made[0].contains("area: \"02953\""), "{}", made[0]);
}
