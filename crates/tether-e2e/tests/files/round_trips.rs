//! Round trips with `tether cp` and `tether ls`: single files and directory trees keep their
//! contents, modes and mtimes both ways.

use tether_e2e::peers::{sha256_deterministic, sha256_file, write_deterministic_file};

use crate::common::*;

#[test]
fn small_files_round_trip_with_checksums_modes_and_mtimes() {
    let s = Setup::start("");
    let cases: [(u64, u32, u64); 3] = [
        (0, 0o644, 1_000_000_000),
        (1, 0o600, 1_234_567_890),
        (4097, 0o755, 1_600_000_000),
    ];

    for (i, &(size, mode, mtime)) in cases.iter().enumerate() {
        // Upload, then download what was uploaded.
        let original = s.local(&format!("up-{size}"));
        write_deterministic_file(&original, i as u64, size);
        set_mode(&original, mode);
        set_mtime(&original, mtime);
        let expected = sha256_deterministic(i as u64, size);
        let on_device = s.root.join(format!("up-{size}"));
        let report = parse_json(&s.cp(&["--json", original.to_str().unwrap(), &s.remote(&on_device)]));
        assert_eq!(report["files"], 1, "{report}");
        assert_eq!(report["bytes"], size, "{report}");
        assert_eq!(report["sha256"], expected.as_str(), "{report}");
        assert_eq!(sha256_file(&on_device), expected, "uploaded {size} B differ");
        assert_eq!(
            mode_of(&on_device),
            mode,
            "the upload keeps the local mode {mode:o}"
        );

        let back = s.local(&format!("back-{size}"));
        s.cp(&[&s.remote(&on_device), back.to_str().unwrap()]).ok();
        assert_eq!(sha256_file(&back), expected, "round trip of {size} B differs");
        assert_eq!(mode_of(&back), mode_of(&on_device), "download keeps the mode");
        assert_eq!(mtime_of(&back), mtime_of(&on_device), "download keeps the mtime");

        // A file made on the device, downloaded into an existing local directory.
        let device_file = s.root.join(format!("made-on-device-{size}"));
        write_deterministic_file(&device_file, 100 + i as u64, size);
        let device_mode = [0o640, 0o700, 0o444][i];
        set_mode(&device_file, device_mode);
        set_mtime(&device_file, mtime + 17);
        let into = s.local(&format!("into-{size}"));
        std::fs::create_dir(&into).unwrap();
        let report = parse_json(&s.cp(&["--json", &s.remote(&device_file), into.to_str().unwrap()]));
        let fetched = into.join(format!("made-on-device-{size}"));
        let expected = sha256_deterministic(100 + i as u64, size);
        assert_eq!(report["sha256"], expected.as_str(), "{report}");
        assert_eq!(report["bytes"], size, "{report}");
        assert_eq!(sha256_file(&fetched), expected);
        assert_eq!(
            mode_of(&fetched),
            device_mode,
            "download keeps mode {device_mode:o}"
        );
        assert_eq!(mtime_of(&fetched) as u64, mtime + 17, "download keeps the mtime");
        assert_eq!(
            names_in(&into),
            [format!("made-on-device-{size}")],
            "no temporary files left"
        );
    }

    // `ls --json` lists what is there, with sizes.
    let listing = parse_json(&s.cli.run(&["ls", "--json", &s.remote(&s.root)]));
    let rows = listing.as_array().expect("ls --json prints an array");
    for &(size, _, _) in &cases {
        for name in [format!("up-{size}"), format!("made-on-device-{size}")] {
            let row = rows
                .iter()
                .find(|r| r["name"] == name.as_str())
                .unwrap_or_else(|| panic!("`{name}` not listed: {listing}"));
            assert_eq!(row["size"], size, "{row}");
        }
    }
    assert_eq!(rows.len(), 2 * cases.len(), "only those files: {listing}");
    assert_eq!(
        names_in(&s.root).len(),
        2 * cases.len(),
        "no temporary files on the device"
    );
}

#[test]
fn a_directory_tree_round_trips_with_r() {
    let s = Setup::start("");
    let source = s.local("tree");
    for dir in ["a/b/c", "a/empty", "d"] {
        std::fs::create_dir_all(source.join(dir)).unwrap();
    }
    let files: [(&str, u64, u32); 6] = [
        ("top.txt", 10, 0o644),
        ("a/one", 0, 0o600),
        ("a/b/two", 4097, 0o755),
        ("a/b/c/three", 300_000, 0o640),
        ("d/four", 1, 0o644),
        ("d/.hidden", 99, 0o600),
    ];
    for (i, &(name, size, mode)) in files.iter().enumerate() {
        let path = source.join(name);
        write_deterministic_file(&path, 500 + i as u64, size);
        set_mode(&path, mode);
        set_mtime(&path, 1_500_000_000 + i as u64);
    }
    set_mode(&source.join("d"), 0o750);
    let expected = tree(&source);

    // Into an existing directory on the device: it lands as `<root>/tree`.
    let report = parse_json(&s.cp(&["-r", "--json", source.to_str().unwrap(), &s.remote(&s.root)]));
    assert_eq!(report["files"], files.len(), "{report}");
    let uploaded = s.root.join("tree");
    let on_device = tree(&uploaded);
    assert_eq!(
        on_device.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the uploaded tree has other entries"
    );
    for (name, (is_dir, mode, sha)) in &expected {
        let (device_is_dir, device_mode, device_sha) = &on_device[name];
        assert_eq!(is_dir, device_is_dir, "{name}");
        assert_eq!(sha, device_sha, "{name} differs on the device");
        if !is_dir {
            assert_eq!(mode, device_mode, "{name} keeps its mode on upload");
        }
    }

    // Back into an existing local directory: `<back>/tree`, same contents, modes and mtimes
    // as on the device.
    let back = s.local("back");
    std::fs::create_dir(&back).unwrap();
    s.cp(&["-r", &s.remote(&uploaded), back.to_str().unwrap()]).ok();
    let downloaded = back.join("tree");
    let round_trip = tree(&downloaded);
    assert_eq!(
        round_trip, on_device,
        "the downloaded tree differs from the device's"
    );
    for (name, (is_dir, _, _)) in &round_trip {
        if !is_dir {
            assert_eq!(
                mtime_of(&downloaded.join(name)),
                mtime_of(&uploaded.join(name)),
                "{name}: download keeps the mtime"
            );
        }
    }
    assert_eq!(names_in(&back), ["tree"]);
}
