// dlib's own face network and MMOD face detector, built against Debian's libdlib-dev (dlib 19.24,
// DLIB_USE_BLAS, OpenBLAS): the baseline a user who builds dlib with BLAS gets. Driven by
// bench/bench_blas_dlib.py over stdin so its timed blocks alternate with faceledger's in one run.
//
//   blas_dlib RESNET.dat MMOD.dat CHIPS.raw IMAGES.raw
//   CHIPS.raw: int32 n, then n x 150 x 150 x 3 uint8 RGB; IMAGES.raw: int32 n, then per image
//   int32 height, int32 width, height x width x 3 uint8 RGB.
//   stdin commands, one per line; each answers one line on stdout:
//     net BATCH     every chip through the face network, BATCH at a time -> seconds
//     mmod          every image through the MMOD detector (no upsampling) -> seconds faces
//     descriptors F write the descriptors (n x 128 float32) to F -> ok
#include <dlib/dnn.h>
#include <dlib/image_processing.h>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>

using namespace dlib;

// dlib's face recognition ResNet (dlib/examples/dnn_face_recognition_ex.cpp)
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual = add_prev1<block<N, BN, 1, tag1<SUBNET>>>;
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<block<N, BN, 2, tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, SUBNET>>>>>;
template <int N, typename SUBNET> using ares = relu<residual<block, N, affine, SUBNET>>;
template <int N, typename SUBNET> using ares_down = relu<residual_down<block, N, affine, SUBNET>>;
template <typename SUBNET> using alevel0 = ares_down<256, SUBNET>;
template <typename SUBNET> using alevel1 = ares<256, ares<256, ares_down<256, SUBNET>>>;
template <typename SUBNET> using alevel2 = ares<128, ares<128, ares_down<128, SUBNET>>>;
template <typename SUBNET> using alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUBNET>>>>;
template <typename SUBNET> using alevel4 = ares<32, ares<32, ares<32, SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
    max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

// dlib's MMOD face detector (dlib/examples/dnn_mmod_face_detection_ex.cpp)
template <long num_filters, typename SUBNET> using con5d = con<num_filters, 5, 5, 2, 2, SUBNET>;
template <long num_filters, typename SUBNET> using con5 = con<num_filters, 5, 5, 1, 1, SUBNET>;
template <typename SUBNET>
using downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16, SUBNET>>>>>>>>>;
template <typename SUBNET> using rcon5 = relu<affine<con5<45, SUBNET>>>;
using mmod_type = loss_mmod<con<1, 9, 9, 1, 1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>;

static int32_t read_i32(std::ifstream& in) {
    int32_t v;
    in.read(reinterpret_cast<char*>(&v), 4);
    return v;
}

static void read_image(std::ifstream& in, long h, long w, matrix<rgb_pixel>& img) {
    img.set_size(h, w);
    std::vector<unsigned char> buf(h * w * 3);
    in.read(reinterpret_cast<char*>(buf.data()), buf.size());
    for (long r = 0; r < h; ++r)
        for (long c = 0; c < w; ++c) {
            const unsigned char* p = &buf[(r * w + c) * 3];
            img(r, c) = rgb_pixel(p[0], p[1], p[2]);
        }
}

int main(int argc, char** argv) {
    if (argc != 5) {
        std::cerr << "usage: blas_dlib RESNET.dat MMOD.dat CHIPS.raw IMAGES.raw\n";
        return 2;
    }
    anet_type net;
    deserialize(argv[1]) >> net;
    mmod_type mmod;
    deserialize(argv[2]) >> mmod;
    std::vector<matrix<rgb_pixel>> chips, images;
    {
        std::ifstream in(argv[3], std::ios::binary);
        int32_t n = read_i32(in);
        chips.resize(n);
        for (auto& c : chips) read_image(in, 150, 150, c);
    }
    {
        std::ifstream in(argv[4], std::ios::binary);
        int32_t n = read_i32(in);
        images.resize(n);
        for (auto& im : images) {
            int32_t h = read_i32(in), w = read_i32(in);
            read_image(in, h, w, im);
        }
    }
    std::cout << "ready " << chips.size() << " " << images.size() << std::endl;
    std::vector<matrix<float, 0, 1>> descriptors;
    std::string cmd;
    while (std::cin >> cmd) {
        auto t0 = std::chrono::steady_clock::now();
        if (cmd == "net") {
            size_t batch;
            std::cin >> batch;
            descriptors.clear();
            for (size_t i = 0; i < chips.size(); i += batch) {
                std::vector<matrix<rgb_pixel>> part(chips.begin() + i, chips.begin() + std::min(chips.size(), i + batch));
                auto out = net(part, batch);
                descriptors.insert(descriptors.end(), out.begin(), out.end());
            }
            std::chrono::duration<double> s = std::chrono::steady_clock::now() - t0;
            std::cout << s.count() << std::endl;
        } else if (cmd == "mmod") {
            size_t faces = 0;
            for (auto& im : images) faces += mmod(im).size();
            std::chrono::duration<double> s = std::chrono::steady_clock::now() - t0;
            std::cout << s.count() << " " << faces << std::endl;
        } else if (cmd == "descriptors") {
            std::string path;
            std::cin >> path;
            std::ofstream out(path, std::ios::binary);
            for (auto& d : descriptors) out.write(reinterpret_cast<const char*>(&d(0)), 128 * sizeof(float));
            out.close();  // written before the answer: the reader opens the file on "ok"
            std::cout << "ok" << std::endl;
        } else {
            std::cout << "unknown " << cmd << std::endl;
        }
    }
    return 0;
}
